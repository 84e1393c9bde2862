"""The one sequence builder: token ids, speech placeholders and loss targets for every output type.

Data workers use it to build training batches (and to know sequence lengths for batching), the
backbone only fills its speech placeholders with adapter outputs, and generation uses it for the
prompt part, so training and inference cannot drift apart (reference pain points 5-6).

Id convention in ``input_ids`` (plain ints, no special tensor types):
    id >= 0        a text token, embedded with the LLM's input embeddings
    id == SPEECH   (-1) one speech embedding from the adapter, filled in by the backbone
    id <= -2       row ``-id - 2`` of the speech-token table (e.g. input-speech BOS 4097 / EOS 4098)

``targets`` has the same length as ``input_ids``: ``targets[t]`` is the token the model must predict
from position ``t`` (already shifted), or ``IGNORE`` (-100). The text head is applied only where a
target is set.

Layouts (reference sections 1.7 and 5.2):
    osum:    [instruction] [S_BOS] [speech ...] [S_EOS] [target] [EOS]
    chatml:  <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n[instruction][S_BOS][speech][S_EOS]
             <|im_end|>\\n<|im_start|>assistant\\n[target]<|im_end|>
Every sample is contiguous; a batch is padded at the right only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SPEECH = -1
IGNORE = -100

ORIGINAL_SYSTEM_PROMPTS = {
    "text": "You are OSUM-chat, an audio understanding assistant by ASLP Lab. You can transcribe speech "
    "accurately and analyze paralinguistic cues to provide precise text responses.",
    "s2t_chat": "You are OSUM-chat, a speech-to-text dialogue assistant by ASLP Lab. You understand both the "
    "meaning and paralinguistic cues in speech then respond exclusively with appropriate text.",
    "text2text": "You are OSUM-chat, a text-to-text dialogue assistant by ASLP Lab. You understand user input "
    "in text then respond exclusively with appropriate text.",
    "text2token": "You are OSUM-chat, a speech synthesis assistant by ASLP Lab. You generate natural and "
    "fluent speech from text input.",
}


def speech_table_id(row: int) -> int:
    """The ``input_ids`` value that stands for row ``row`` of the speech-token table."""
    return -row - 2


@dataclass
class TemplateConfig:
    """Literal markers and ids of a layout; defaults follow the original systems."""

    layout: str = "chatml"  # "osum" (no chat template) or "chatml" (OSUM-EChat)
    eos_token: str = "<|im_end|>"  # "<|endoftext|>" for the osum layout
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"
    speech_bos_row: int = 4097
    speech_eos_row: int = 4098
    system_prompts: dict[str, str] = field(default_factory=lambda: dict(ORIGINAL_SYSTEM_PROMPTS))
    default_system_prompt: str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    # Strides between mel frames and speech embeddings: Whisper conv (2) then adapter convs (2, 2).
    strides: tuple[int, ...] = (2, 2, 2)


@dataclass
class Sequence:
    """One laid-out sample."""

    input_ids: list[int]
    targets: list[int]
    n_speech: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_supervised(self) -> int:
        return sum(t != IGNORE for t in self.targets)


class SequenceBuilder:
    """Lays out prompts and targets as token ids for a given tokenizer and layout."""

    def __init__(self, tokenizer, config: TemplateConfig | None = None):
        self.tok = tokenizer
        self._backend = getattr(tokenizer, "backend_tokenizer", None)  # set for fast (Rust) tokenizers
        self.cfg = config or TemplateConfig()
        if self.cfg.layout not in ("osum", "chatml"):
            raise ValueError(f"template.layout must be 'osum' or 'chatml', got {self.cfg.layout!r}")
        self.eos_id = self._special_id(self.cfg.eos_token, "template.eos_token")
        if self.cfg.layout == "chatml":
            self._special_id(self.cfg.im_start, "template.im_start")
            self._special_id(self.cfg.im_end, "template.im_end")
        self._cache: dict[str, list[int]] = {}

    def _special_id(self, token: str, key: str) -> int:
        ids = self.tok.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{key}={token!r} is not a single token of this tokenizer (got ids {ids})")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._backend is not None:  # the Rust tokenizer directly: the same ids without the Python wrapper
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self.tok.encode(text, add_special_tokens=False))

    def _encode_cached(self, text: str) -> list[int]:
        if len(self._cache) > 100_000:  # free-form instructions: do not grow without bound
            self._cache.clear()
        if text not in self._cache:
            self._cache[text] = self.encode(text)
        return self._cache[text]

    def speech_length(self, mel_frames: int) -> int:
        """Number of speech embeddings the encoder and adapter make from ``mel_frames`` frames."""
        n = mel_frames
        for s in self.cfg.strides:
            n = math.ceil(n / s)
        return n

    def system_prompt(self, output_type: str) -> str:
        return self.cfg.system_prompts.get(output_type, self.cfg.default_system_prompt)

    def prompt(self, output_type: str, instruction: str | None, n_speech: int) -> list[int]:
        """Everything before the target: the part generation starts from."""
        c = self.cfg
        speech = []
        if n_speech > 0:
            speech = [speech_table_id(c.speech_bos_row)] + [SPEECH] * n_speech + [speech_table_id(c.speech_eos_row)]
        instr = self._encode_cached(instruction) if instruction else []  # prompts come from small pools
        if c.layout == "osum":
            return instr + speech
        head = self._encode_cached(f"{c.im_start}system\n{self.system_prompt(output_type)}{c.im_end}\n{c.im_start}user\n")
        tail = self._encode_cached(f"{c.im_end}\n{c.im_start}assistant\n")
        return head + instr + speech + tail

    def build(self, output_type: str, instruction: str | None, n_speech: int, target: str) -> Sequence:
        """The whole training sequence: prompt, target and EOS, with shifted targets."""
        prompt = self.prompt(output_type, instruction, n_speech)
        if not prompt:
            raise ValueError("a sequence needs at least one prompt token before its target")
        answer = self.encode(target) + [self.eos_id]
        full = prompt + answer
        targets = [IGNORE] * (len(prompt) - 1) + answer
        return Sequence(input_ids=full[:-1], targets=targets, n_speech=n_speech)
