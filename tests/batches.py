"""Model-ready batches laid out by the real template, for model tests (the tensors SpeechLLM.forward takes)."""

from __future__ import annotations

import torch

from osum.template import IGNORE, SequenceBuilder, TemplateConfig, Turn


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def text_batch(tokenizer, frames=(90, 57), target: str = "one two", instruction: str = "Transcribe the speech.",
               n_mels: int = 80, utterance_slots: int = 0) -> dict:
    """One speech clip per sample (random log-mel of ``frames`` frames), an understanding target each."""
    builder = SequenceBuilder(tokenizer, TemplateConfig(utterance_slots=utterance_slots))
    seqs = [builder.build("text", [Turn.spoken(builder.speech_length(f), instruction, text=target)]) for f in frames]
    return {"input_ids": pad([s.input_ids for s in seqs], tokenizer.pad_token_id),
            "text_targets": pad([s.text_targets for s in seqs], IGNORE),
            "speech_targets": pad([s.speech_targets for s in seqs], IGNORE),
            "mel": torch.randn(len(frames), max(frames), n_mels), "mel_lengths": torch.tensor(list(frames)),
            "clip_keys": [f"k{i}" for i in range(len(frames))]}
