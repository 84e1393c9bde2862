"""Label tags as single tokens of any tokenizer: a tokenizer folder with every tag added as one token.

A pretrained tokenizer splits ``<FEMALE>`` into pieces (SmolLM2: ``<``, ``F``, ``EM``, ``ALE``, ``>``) and
merges ``<`` with its neighbours, so the label is several predictions and its first piece says little.
``add-tags`` writes a new tokenizer folder with each tag of the label inventories added as one token; point
``model.llm.tokenizer`` at it (``model.llm.path`` stays the weights folder). The LLM's embedding table grows
to the tokenizer when it is smaller (``osum.models.llm.build_llm``), and under LoRA
``model.llm.lora.trainable_tokens: tags`` trains those rows only (saved with the LoRA weights, merged by
``osum.export``).
"""

from __future__ import annotations

from pathlib import Path

from osum.tasks.labels import every_tag


def add_tag_tokens(src: str | Path, out: str | Path, tags: list[str] | None = None) -> tuple[Path, list[str]]:
    """Copy the tokenizer of ``src`` to ``out`` with each tag one token; returns the folder and the tags added
    (tags the tokenizer already keeps whole are left as they are)."""
    from transformers import AddedToken, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(src))
    wanted = tags if tags is not None else every_tag()
    new = [t for t in wanted if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    tokenizer.add_tokens([AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False)
                          for t in new])
    for t in wanted:
        ids = tokenizer.encode(t, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"{t!r} is still {len(ids)} tokens after adding it")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out, new
