"""The text side of a model: its tokenizer, the sequence builder and the task registry, set up in one place.

Data (the loader lays out sequences), models (the LLM's vocabulary size) and inference (prompts and
parsing) all take their text side from here. The text-side config is a plain dict
``{"tokenizer": folder, "template": {...}, "rendering": {...}}``: ``text_config`` makes it from a resolved
run config (or an export's ``osum.yaml``), stages keep it in their hyper-parameters, and
``build_text_side`` turns its parts into objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from osum.tasks import TaskRegistry
from osum.template import SequenceBuilder, TemplateConfig


def load_tokenizer(path: str):
    """A Hugging Face tokenizer from a local folder, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise FileNotFoundError(f"tokenizer folder {path} does not exist (model.llm.tokenizer / model.llm.path); "
                                "models load from local folders only")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:  # the pad id only fills masked positions, any real id will do
        tok.pad_token = tok.eos_token
    return tok


def text_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The text-side config of a resolved run config (``model.llm.tokenizer``, ``template``, ``rendering``)."""
    return {"tokenizer": cfg["model"]["llm"]["tokenizer"], "template": cfg["template"], "rendering": cfg["rendering"]}


def template_config(template: Mapping[str, Any]) -> TemplateConfig:
    """``TemplateConfig`` from a config mapping. Checkpoints written before the speech vocabulary became one
    setting name its input BOS / EOS rows instead; those rows must be ``speech_codes + 1`` / ``+ 2``."""
    t = dict(template)
    t["strides"] = tuple(t.get("strides", (2, 2, 2)))
    if t.get("s2s_reread") is not None:
        t["s2s_reread"] = tuple(int(n) for n in t["s2s_reread"])
    bos, eos = t.pop("speech_bos_row", None), t.pop("speech_eos_row", None)
    if bos is not None or eos is not None:
        codes = int(bos) - 1
        if int(eos) != codes + 2:
            raise ValueError(f"template: speech_bos_row={bos}, speech_eos_row={eos} are not two consecutive rows")
        t.setdefault("speech_codes", codes)
    return TemplateConfig(**t)


def build_text_side(tokenizer_path: str, template: Mapping[str, Any], rendering: Mapping[str, Any]):
    """Tokenizer, sequence builder and task registry: shared by training, decoding and inference."""
    tokenizer = load_tokenizer(tokenizer_path)
    builder = SequenceBuilder(tokenizer, template_config(template))
    registry = TaskRegistry.from_config(**dict(rendering))
    return tokenizer, builder, registry
