"""The LLM judge on a tiny random Qwen2 with a tiny trained tokenizer: bounded, deterministic, batch-independent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_prep.tokenizer import build_tokenizer
from osum.evaluate.llm_judge import DIMENSIONS, JudgeItem, LlmJudge, summarize

TEXTS = ["what time is it now", "i feel a bit sad today and i have a cold",
         "the kitchen light is on, shall i turn it off?", "rate the reply with a score from one to five",
         "1 2 3 4 5", "Score (1-5): 4"]
ITEMS = [
    JudgeItem("what time is it", {"age": "ADULT", "gender": "MALE", "emotion": "NEUTRAL"}, "it is three o'clock."),
    JudgeItem("i feel sad today", {"age": "CHILD", "gender": "FEMALE", "emotion": "SAD", "event": "COUGH"},
              "oh no, i am sorry you feel sad, and take care of that cough.", reply_emotion="COMFORTING"),
    JudgeItem("turn off the light", {}, "done, the light is off, have a good night and sleep well."),
]


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> LlmJudge:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("judge")
    tokenizer = build_tokenizer(TEXTS, [], folder, vocab_size=300)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                         max_position_embeddings=512))
    with torch.no_grad():  # far from uniform digit probabilities, so that the comparisons below mean something
        for parameter in model.parameters():
            parameter.mul_(10.0)
    model.save_pretrained(folder)
    return LlmJudge(folder)


def test_scores_bounded_deterministic_and_batch_independent(judge: LlmJudge) -> None:
    first = judge.score(ITEMS, batch_size=3)
    assert len(first) == len(ITEMS)
    for scores in first:
        assert set(scores) == set(DIMENSIONS)
        assert all(1.0 <= value <= 5.0 for value in scores.values())
    again = judge.score(ITEMS, batch_size=3)
    one_by_one = judge.score(ITEMS, batch_size=1)
    for a, b, c in zip(first, again, one_by_one):
        for dimension in DIMENSIONS:
            assert abs(a[dimension] - b[dimension]) < 1e-4
            assert abs(a[dimension] - c[dimension]) < 1e-4
    assert len({round(value, 3) for scores in first for value in scores.values()}) > 1
    summary = summarize(first)
    assert set(summary) == set(DIMENSIONS)
    assert summary["content"] == round(sum(s["content"] for s in first) / len(first), 3)


def test_prompt_holds_the_item_and_ends_before_the_digit(judge: LlmJudge) -> None:
    item = ITEMS[1]
    for dimension in DIMENSIONS:
        prompt = judge.prompt(item, dimension)
        assert item.query in prompt and item.reply in prompt
        assert all(value in prompt for value in item.cues.values())
        assert "COMFORTING" in prompt
        assert prompt.endswith("Score (1-5): ")
        assert "<|im_start|>assistant\n" in prompt  # the tokenizer's chat template was used
    assert judge.prompt(item, "content") != judge.prompt(item, "empathy")
    with pytest.raises(ValueError, match="dimension"):
        judge.prompt(item, "fluency")


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_judge"
    with pytest.raises(FileNotFoundError, match="no_such_judge"):
        LlmJudge(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        LlmJudge(tmp_path / "empty")
