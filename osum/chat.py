"""Talking to a dialogue model: which output type a turn uses, its turns laid out as training laid them out, and a
multi-turn session that keeps the last turns (the CLI's ``--mode s2t|s2s`` and the web demo use it).

A first turn (no history kept) is a think task when the model thinks (``rendering.think`` of its checkpoint:
tag or language; ``none`` maps the think task to its plain variant), a later turn is a ``<HISTORY>`` task whose
earlier turns are ``Turn([Speech(n_i)], text=reply_i, speech=codes_i)``: exactly what
``osum.data.processing`` builds from a sample's ``history`` (reference 5.4; the original's inference layout
differed from its training layout, pain point). A session keeps at most ``window`` earlier turns (default 5,
as the original's multi-turn inference) and forgets them on ``clear()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from osum.inference import SpeechAssistant
from osum.template import Reply, Speech, Turn

TASKS = {  # (speech out) -> (first turn, later turn)
    False: ("<CHAT> <THINK>", "<CHAT> <HISTORY>"),
    True: ("<CHAT> <TEXT2TOKEN> <THINK>", "<CHAT> <TEXT2TOKEN> <HISTORY>"),
}


@dataclass
class PastTurn:
    """One earlier exchange: the user's speech embeddings (n, H) and what the assistant replied."""

    speech: torch.Tensor
    text: str
    codes: list[int] | None = None


def output_type(assistant: SpeechAssistant, speech_out: bool, has_history: bool, think: bool = True) -> str:
    """The output type of a turn (see the module docstring)."""
    first, later = TASKS[speech_out]
    return assistant.registry.get(later if has_history or not think else first).output_type


def layout_turns(history: Sequence[PastTurn], n_current: int) -> list[Turn]:
    """History turns then the current turn (its reply is what the model generates)."""
    return [*(Turn([Speech(int(p.speech.shape[0]))], text=p.text, speech=p.codes) for p in history),
            Turn([Speech(n_current)])]


def pack_speech(clips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech embeddings of clips (each (n, H)) as one padded (K, L, H) batch and its lengths, in order."""
    lengths = torch.tensor([int(c.shape[0]) for c in clips])
    return torch.nn.utils.rnn.pad_sequence(list(clips), batch_first=True), lengths


@dataclass
class ChatSession:
    """A conversation: ``ask(audio)`` answers one spoken turn given the kept earlier turns."""

    assistant: SpeechAssistant
    speech_out: bool = False  # S2S: the reply's speech codes too
    think: bool = True  # first turns think (when the model was trained to)
    window: int = 5  # earlier turns kept; 0: every turn is a first turn
    greedy: bool = False
    seed: int = 0
    max_new_tokens: int | None = None
    history: list[PastTurn] = field(default_factory=list)

    def __post_init__(self):
        self.generator = torch.Generator().manual_seed(self.seed)

    def clear(self) -> None:
        """Start a new conversation."""
        self.history = []

    def ask(self, audio: np.ndarray) -> tuple[str, Reply]:
        """The output type used and the parsed reply (think, text, speech codes) to one 16 kHz clip."""
        speech, lengths = self.assistant.speech([audio])
        current = speech[0, : int(lengths[0])]
        kept = self.history[-self.window :] if self.window > 0 else []
        out_type = output_type(self.assistant, self.speech_out, bool(kept), self.think)
        clips, clip_lengths = pack_speech([p.speech for p in kept] + [current])
        reply = self.assistant.respond(out_type, [layout_turns(kept, int(current.shape[0]))], clips, clip_lengths,
                                       greedy=self.greedy, generator=self.generator,
                                       max_new_tokens=self.max_new_tokens)[0]
        if self.window > 0:
            self.history = [*kept, PastTurn(current, reply.text, reply.speech if self.speech_out else None)]
        return out_type, reply
