"""Tokenizer coverage: a byte-level BPE covers every word; a word-level vocabulary names what it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from data_prep.tokenizer_coverage import TokenizerCoverageError, tokenizer_coverage


def test_bpe_tokenizer_covers_new_words(tokenizer_dir: str) -> None:
    texts = ["turn on the kitchen light", "what is two plus three", "five"]
    result = tokenizer_coverage(texts, tokenizer_dir)
    assert result["ok"] and result["words"] == 11 and result["texts"] == 3
    assert result["max_pieces_per_word"] >= 1 and result["unknown_words"] == []


def test_word_level_vocabulary_names_missing_words(tmp_path: Path) -> None:
    vocab = {"[UNK]": 0, "turn": 1, "on": 2, "the": 3, "light": 4}
    model = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=model, unk_token="[UNK]").save_pretrained(tmp_path)
    with pytest.raises(TokenizerCoverageError, match=r"does not cover 1 words \['kitchen'\]"):
        tokenizer_coverage(["turn on the kitchen light"], tmp_path)
    with pytest.raises(FileNotFoundError, match="no tokenizer in"):
        tokenizer_coverage(["x"], tmp_path / "missing")
