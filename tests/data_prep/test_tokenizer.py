"""build_tokenizer: byte-level round trip, whole added tokens, reload through AutoTokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data_prep.tokenizer import SPECIAL_TOKENS, build_tokenizer

TEXTS = [
    "three seven one",
    "turn on the kitchen light",
    "what is two plus three",
    "  leading and  double spaces ",
    "Transcribe the speech, then tag the emotion.\nAnswer briefly:",
    "请转录这段语音 <开始回答> five",
    "<HAPPY> tags <SAD>inside text<ANGER>",
]
ADDED = ["<HAPPY>", "<SAD>", "<ANGER>", "<开始回答>", "<ANSWER>"]


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(TEXTS * 5, ADDED, out_dir, vocab_size=400)
    return out_dir


def test_round_trip(built_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_dir)
    for text in TEXTS + ["unseen words: zebra 42 <HAPPY>"]:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_added_and_special_tokens_are_single_ids(built_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_dir)
    ids = [tokenizer.encode(token, add_special_tokens=False) for token in SPECIAL_TOKENS + ADDED]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(ids)
    tagged = tokenizer.encode("hello<HAPPY>", add_special_tokens=False)
    assert tagged[-1] == tokenizer.convert_tokens_to_ids("<HAPPY>")
    # tags are not special: skip_special_tokens drops <|im_end|> but keeps them
    ids_with_eos = tokenizer.encode("<SAD> ok<|im_end|>", add_special_tokens=False)
    assert tokenizer.decode(ids_with_eos, skip_special_tokens=True) == "<SAD> ok"


def test_reload_settings(built_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|pad|>"
    assert len(tokenizer) <= 400 + len(ADDED)
    chat = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "hi"}],
        tokenize=False, add_generation_prompt=True)
    assert chat == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
