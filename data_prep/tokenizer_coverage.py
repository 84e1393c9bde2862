"""Whether a saved tokenizer covers a corpus: every word and text encodes without unknown pieces.

A corpus built for a later stage (the TTS corpus) reuses the tokenizer of an earlier one (the mini
corpus); :func:`tokenizer_coverage` checks each distinct word and text of the new corpus: no unknown
id among its pieces, and ``decode(encode(x)) == x``. A byte-level BPE can encode anything, so a
failure means the tokenizer is not the one expected; the piece counts show how well it fits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer


class TokenizerCoverageError(ValueError):
    """Some words or texts of a corpus do not survive the tokenizer."""


def tokenizer_coverage(texts: list[str], tokenizer_dir: str | os.PathLike) -> dict[str, Any]:
    """Coverage summary of ``texts`` by the tokenizer in ``tokenizer_dir``; raises
    :class:`TokenizerCoverageError` naming the words (and texts) that encode to unknown pieces."""
    path = Path(tokenizer_dir)
    if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"no tokenizer in {path}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    unique_texts = list(dict.fromkeys(texts))
    words = sorted({word for text in unique_texts for word in text.split()})
    pieces = {word: _pieces(tokenizer, word) for word in words}
    bad_words = [word for word, n in pieces.items() if n is None]
    bad_texts = [text for text in unique_texts if _pieces(tokenizer, text) is None]
    if bad_words or bad_texts:
        raise TokenizerCoverageError(
            f"tokenizer {path} does not cover {len(bad_words)} words {bad_words[:20]} "
            f"and {len(bad_texts)} texts {bad_texts[:5]}")
    counts = list(pieces.values())
    return {"path": str(path), "words": len(words), "texts": len(unique_texts), "unknown_words": [],
            "failed_texts": [], "max_pieces_per_word": max(counts, default=0),
            "mean_pieces_per_word": round(sum(counts) / max(len(counts), 1), 3), "ok": True}


def _pieces(tokenizer: Any, text: str) -> int | None:
    """Number of pieces of ``text``; None when one is unknown or the round trip changes the text."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
        return None
    if tokenizer.decode(ids, clean_up_tokenization_spaces=False).strip() != text:
        return None
    return len(ids)
