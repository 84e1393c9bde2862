"""The LLM judge: a local causal LM scores dialogue replies 1-5, in the manner of EChat-eval's GPT-4o scoring.

EChat-eval (reference 6.2) gives GPT-4o the user's words, the user's paralinguistic labels and the reply,
and has it score several dimensions. Here the judge is any local folder that transformers loads with
``AutoModelForCausalLM`` + ``AutoTokenizer`` (no download: ``local_files_only``). One prompt per item and
dimension (:data:`DIMENSIONS`, each described in the prompt) ends right before the score digit; the score is
read from the next-token logits restricted to the digits ``1``..``5``: softmax over those five, expected
value ``sum p_i * i``. No free generation is parsed, so the score is deterministic, always in [1, 5] and
defined for any model, even a tiny random one (which makes it testable; its scores mean nothing).
The tokenizer's chat template wraps the prompt when it has one (a user turn, then the generation prompt),
followed by ``Score (1-5): ``; else the prompt is plain text. Rows are left-padded, with
``position_ids = cumsum(mask) - 1`` (for models that take them) so that a score does not depend on the batch
it was computed in.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import torch

DIMENSIONS = ("content", "empathy", "paralinguistic")
DESCRIPTIONS: dict[str, str] = {
    "content": "content: does the reply answer what the user said, correctly, relevantly and helpfully, "
               "in a coherent and natural way?",
    "empathy": "empathy: do the tone and wording of the reply suit the user's emotional state (comfort a sad "
               "user, share a happy user's joy, calm an angry one) and show care for the user?",
    "paralinguistic": "paralinguistic fit: does the reply take the user's voice cues into account (age, gender, "
                      "emotion, sound events such as a cough or a laugh), e.g. simple gentle words for a child, "
                      "concern for a cough, instead of ignoring them?",
}
SCORE_SUFFIX = "Score (1-5): "
DIGITS = ("1", "2", "3", "4", "5")


@dataclass
class JudgeItem:
    """One reply to judge: what the user said, the user's paralinguistic labels, and the reply."""

    query: str  # what the user said (transcript)
    cues: dict[str, str]  # the user's paralinguistic labels, e.g. {"age": "CHILD", "emotion": "SAD", "event": "COUGH"}
    reply: str  # the model's text reply to judge
    reply_emotion: str | None = None


class LlmJudge:
    """Score replies with the causal LM in ``folder``, one score in [1, 5] per item and dimension."""

    def __init__(self, folder: str | os.PathLike, device: str = "cpu",
                 dimensions: tuple[str, ...] = DIMENSIONS) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        unknown = [d for d in dimensions if d not in DESCRIPTIONS]
        if unknown or not dimensions:
            raise ValueError(f"unknown judge dimension(s) {unknown}; known: {list(DESCRIPTIONS)}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"LLM judge folder {self.folder} does not exist")
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"{self.folder} is not a transformers model folder (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{self.folder}: cannot load a causal LM and its tokenizer: {e}") from e
        self.model.to(device).eval()
        self.device = device
        self.dimensions = tuple(dimensions)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"{self.folder}: the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.templated = bool(getattr(self.tokenizer, "chat_template", None))
        self.takes_positions = "position_ids" in inspect.signature(self.model.forward).parameters
        self.digit_ids = _digit_ids(self.tokenizer, self.folder)

    def prompt(self, item: JudgeItem, dimension: str) -> str:
        """The judging prompt of ``item`` for ``dimension``, ending right before the score digit."""
        if dimension not in DESCRIPTIONS:
            raise ValueError(f"unknown judge dimension {dimension!r}; known: {list(DESCRIPTIONS)}")
        cues = ", ".join(f"{kind}: {value}" for kind, value in item.cues.items() if str(value).strip()) or "none given"
        lines = [
            "You judge a spoken dialogue assistant. A user spoke to it; you get what the user said, the "
            "paralinguistic cues of the user's voice, and the assistant's reply.",
            "",
            f"User's words: {item.query.strip()}",
            f"User's voice cues: {cues}",
            f"Assistant's reply: {item.reply.strip()}",
        ]
        if item.reply_emotion:
            lines.append(f"Emotion of the reply: {item.reply_emotion.strip()}")
        lines += ["", f"Rate only the {DESCRIPTIONS[dimension]}",
                  "Answer with one digit: 1 (very poor), 2 (poor), 3 (fair), 4 (good) or 5 (excellent)."]
        text = "\n".join(lines)
        if self.templated:
            chat = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
            return f"{chat}{SCORE_SUFFIX}"
        return f"{text}\n{SCORE_SUFFIX}"

    def score(self, items: list[JudgeItem], batch_size: int = 8) -> list[dict[str, float]]:
        """One dict per item, in order: dimension -> expected score in [1, 5]."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        prompts = [self.prompt(item, d) for item in items for d in self.dimensions]
        values: list[float] = []
        for start in range(0, len(prompts), batch_size):
            values += self._batch(prompts[start : start + batch_size])
        n = len(self.dimensions)
        return [dict(zip(self.dimensions, values[i * n : (i + 1) * n])) for i in range(len(items))]

    def _batch(self, prompts: list[str]) -> list[float]:
        """Expected scores of left-padded ``prompts`` from the last position's digit logits."""
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not self.templated)
        ids = encoded["input_ids"].to(self.device)
        mask = encoded["attention_mask"].to(self.device)
        positions = {"position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)} if self.takes_positions else {}
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask, **positions).logits[:, -1, :]
        probs = torch.softmax(logits[:, self.digit_ids].float(), dim=-1)
        scores = probs @ torch.arange(1, len(DIGITS) + 1, dtype=probs.dtype, device=probs.device)
        return [float(s) for s in scores.cpu()]


def _digit_ids(tokenizer, folder: Path) -> list[int]:
    """The token id of each digit ``1``..``5``: the digit's own token, else the first non-blank piece of
    its encoding; ``ValueError`` when a digit has none or two digits share an id."""
    unk = getattr(tokenizer, "unk_token_id", None)
    ids: list[int] = []
    for digit in DIGITS:
        token_id = tokenizer.convert_tokens_to_ids(digit)
        if not isinstance(token_id, int) or token_id < 0 or token_id == unk:
            pieces = [i for i in tokenizer.encode(digit, add_special_tokens=False)
                      if tokenizer.decode([i]).strip() and i != unk]
            if not pieces:
                raise ValueError(f"{folder}: the tokenizer has no token for the score digit {digit!r}")
            token_id = pieces[0]
        ids.append(int(token_id))
    if len(set(ids)) != len(ids):
        raise ValueError(f"{folder}: the score digits 1..5 do not map to distinct tokens ({ids})")
    return ids


def summarize(scores: list[dict[str, float]]) -> dict[str, float]:
    """The mean score per dimension over items (dimensions in order of appearance), rounded to 3 places."""
    totals: dict[str, list[float]] = {}
    for item in scores:
        for dimension, value in item.items():
            totals.setdefault(dimension, []).append(float(value))
    return {dimension: round(sum(values) / len(values), 3) for dimension, values in totals.items()}
