"""Does a dialogue model read its context, or hear the audio again? Three probes on held-out dialogue samples
(``python -m osum.diagnose context``; recipes/mini/README.md, "Dialogue"):

* ``speech_reads_text``: the S2S speech cross-entropy of each sample's true reply codes, after its own reply text and
  after another sample's (same audio, same think). Equal: the speech head does not read the text it speaks.
* ``reply_reads_think``: the reply cross-entropy after the sample's own think and after another sample's think
  (think models only). Equal: the reply does not follow its think.
* ``memory_reads_history``: memory accuracy of the multi-turn queries with their history as is, with turn 1's reply
  text from another dialogue, and with turn 1's user audio from another dialogue. Where the value is read from shows
  as the swap that breaks it.

"Another sample" is the sample ``shift`` places further in the list (never itself).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from osum.evaluate.echat import DialogueCase, Phrasebook, generate_replies, reply_scores
from osum.inference import SpeechAssistant
from osum.template import IGNORE, Turn


def other(cases: Sequence[DialogueCase], i: int, shift: int) -> DialogueCase:
    """The case ``shift`` places after case ``i`` (wrapping), never case ``i`` itself."""
    if len(cases) < 2:
        raise ValueError("the probes need at least two cases to swap between")
    k = (i + shift) % len(cases)
    return cases[k if k != i else (i + 1) % len(cases)]


@torch.no_grad()
def _target_ce(assistant: SpeechAssistant, case: DialogueCase, tag: str, think_meta: dict, text: str, channel: str,
               skip: int = 0) -> float:
    """Mean cross-entropy of one channel's targets ("text" or "speech"; the first ``skip`` of them left out) of
    ``case``'s current turn under task ``tag``, laid out with ``text`` as the reply and the think of ``think_meta``."""
    registry, backbone = assistant.registry, assistant.backbone
    task = registry.get(tag)
    speech, lengths = assistant.speech([case.audio])
    codes = case.meta.get("speech_tokens") if channel == "speech" else None
    turn = Turn.spoken(int(lengths[0]), None, think=registry.think(task, think_meta), text=text, speech=codes)
    seq = assistant.builder.build(task.output_type, [turn])
    ids = torch.tensor([seq.input_ids], device=assistant.device)
    targets = torch.tensor([seq.text_targets if channel == "text" else seq.speech_targets], device=assistant.device)
    hidden = backbone.decoder(inputs_embeds=backbone.embed(ids, speech, lengths), use_cache=False).last_hidden_state
    at = (targets[0] != IGNORE).nonzero()[:, 0][skip:]
    head = backbone.text_head if channel == "text" else backbone.speech_head
    return float(F.cross_entropy(head(hidden[0, at]).float(), targets[0, at]))


def speech_reads_text(assistant: SpeechAssistant, cases: Sequence[DialogueCase], shift: int = 7) -> dict[str, Any]:
    """S2S speech cross-entropy after the sample's own reply text and after another sample's."""
    cases = [c for c in cases if c.meta.get("speech_tokens")]
    tag = "<CHAT> <TEXT2TOKEN> <THINK>"
    own = [_target_ce(assistant, c, tag, c.meta, c.meta["answer"], "speech") for c in cases]
    swapped = [_target_ce(assistant, c, tag, c.meta, other(cases, i, shift).meta["answer"], "speech")
               for i, c in enumerate(cases)]
    return {"n": len(cases), "own_text": round(float(np.mean(own)), 3), "other_text": round(float(np.mean(swapped)), 3)}


def reply_reads_think(assistant: SpeechAssistant, cases: Sequence[DialogueCase], shift: int = 7) -> dict[str, Any]:
    """Reply cross-entropy (the text after the think) after the sample's own think and after another sample's."""
    registry, builder = assistant.registry, assistant.builder
    tag = "<CHAT> <THINK>"
    if not registry.get(tag).thinks:
        return {"n": 0, "note": "the model does not think (rendering.think=none)"}

    def ce(c: DialogueCase, think_meta: dict) -> float:
        n_think = len(builder.encode(registry.think(registry.get(tag), think_meta) + builder.cfg.think_end))
        return _target_ce(assistant, c, tag, think_meta, c.meta["answer"], "text", skip=n_think)

    own = [ce(c, c.meta) for c in cases]
    swapped = [ce(c, other(cases, i, shift).meta) for i, c in enumerate(cases)]
    return {"n": len(cases), "own_think": round(float(np.mean(own)), 3), "other_think": round(float(np.mean(swapped)), 3)}


def memory_reads_history(assistant: SpeechAssistant, cases: Sequence[DialogueCase], shift: int = 5) -> dict[str, Any]:
    """Memory accuracy (S2T, greedy) with the history as is, turn 1's text swapped, turn 1's audio swapped."""
    queries = [c for c in cases if c.history and c.expect.get("memory")]
    if not queries:
        return {"n": 0}
    book = Phrasebook(cases)

    def swapped(field: str) -> list[DialogueCase]:
        out = []
        for i, c in enumerate(queries):
            d = copy.copy(c)
            d.history = [copy.copy(h) for h in c.history]
            setattr(d.history[0], field, getattr(other(queries, i, shift).history[0], field))
            out.append(d)
        return out

    def accuracy(group: list[DialogueCase]) -> float:
        replies = generate_replies(assistant, group, False, True)
        return round(100.0 * sum(bool(reply_scores(g.text, g.case, book).get("memory")) for g in replies) / len(replies), 1)

    return {"n": len(queries), "as_is": accuracy(list(queries)), "turn1_text_swapped": accuracy(swapped("text")),
            "turn1_audio_swapped": accuracy(swapped("audio"))}


def run_probes(assistant: SpeechAssistant, cases: Sequence[DialogueCase], limit: int = 48) -> dict[str, Any]:
    """All three probes: the first ``limit`` first turns for the teacher-forced ones, every memory query."""
    first = [c for c in cases if not c.history][:limit]
    return {"speech_reads_text": speech_reads_text(assistant, first), "reply_reads_think": reply_reads_think(assistant, first),
            "memory_reads_history": memory_reads_history(assistant, cases)}
