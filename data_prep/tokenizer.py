"""Train a small byte-level BPE tokenizer and save it as a transformers tokenizer folder.

Used by the synthetic mini corpus, where no pretrained LLM tokenizer is at hand. Special tokens
follow Qwen's ChatML (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``) plus ``<|pad|>``; tags
such as ``<HAPPY>`` and literals such as ``<开始回答>`` are added tokens that always encode to one
id and survive ``decode`` (they are not special, so ``skip_special_tokens`` keeps them).
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|pad|>"
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tokenizer(
    texts: list[str], added_tokens: list[str], out_dir: str | os.PathLike, vocab_size: int = 1000
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``, add ``added_tokens`` whole, save to ``out_dir``.

    Returns the reloaded tokenizer after checking that every added token is one id and that
    ``decode(encode(text)) == text`` for every training text.
    """
    whole_tokens = SPECIAL_TOKENS + [t for t in dict.fromkeys(added_tokens) if t not in SPECIAL_TOKENS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=whole_tokens,  # gives them the first ids of the model vocabulary
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_without(text, whole_tokens) for text in texts], trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in whole_tokens[4:]])

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(out_dir)

    reloaded = AutoTokenizer.from_pretrained(out_dir)
    _check(reloaded, texts, whole_tokens)
    return reloaded


def _without(text: str, tokens: list[str]) -> str:
    """``text`` with whole tokens replaced by a space, so BPE learns no merges inside them."""
    for token in tokens:
        text = text.replace(token, " ")
    return text


def _check(tokenizer: PreTrainedTokenizerFast, texts: list[str], whole_tokens: list[str]) -> None:
    for token in whole_tokens:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer: {token!r} encodes to {len(ids)} ids, expected 1")
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        decoded = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        if decoded != text:
            raise RuntimeError(f"tokenizer round trip failed: {text!r} -> {decoded!r}")
