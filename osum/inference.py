"""A trained model ready to answer: backbone, tokenizer, sequence builder and task registry together.

Used by `osum.decode` (batches over shards) and `osum.infer` (one file); both lay out prompts with the
same ``SequenceBuilder`` as training did. Loads a training checkpoint or an `osum.export` folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from osum.data.datamodule import build_text_side
from osum.data.features import log_mel_batch
from osum.tasks import Task
from osum.template import Turn


@dataclass
class DecodeOptions:
    max_new_tokens: int = 160
    num_beams: int = 1
    prompt_index: int = 0  # which prompt of a task's pool to use (deterministic decoding)


class SpeechAssistant:
    def __init__(self, backbone, text_cfg: dict[str, Any], device: str = "cpu"):
        self.backbone = backbone.to(device).eval()
        self.device = device
        self.tokenizer, self.builder, self.registry = build_text_side(
            text_cfg["tokenizer"], text_cfg["template"], text_cfg["rendering"])

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu") -> SpeechAssistant:
        from osum.stages.understanding import UnderstandingStage

        stage = UnderstandingStage.load_from_checkpoint(path, map_location=device)
        return cls(stage.backbone, stage.hparams["text"], device)

    @classmethod
    def from_export(cls, directory: str, device: str = "cpu") -> SpeechAssistant:
        """From a folder written by ``osum.export`` (merged LLM, no checkpoint or source folders needed)."""
        from osum.export import load_export

        backbone, text_cfg = load_export(directory)
        return cls(backbone, text_cfg, device)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> SpeechAssistant:
        """An export folder (it holds ``osum.yaml``) or a training checkpoint."""
        from osum.export import is_export_dir

        return cls.from_export(path, device) if is_export_dir(path) else cls.from_checkpoint(path, device)

    def features(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel of the encoder's width for a list of 16 kHz waveforms, computed as one batch on the device."""
        waves = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(a, dtype=torch.float32) for a in audios],
                                                batch_first=True)
        lengths = torch.tensor([len(a) for a in audios])
        return log_mel_batch(waves.to(self.device), lengths.to(self.device), self.backbone.encoder.n_mels)

    @torch.no_grad()
    def speech(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        mel, lengths = self.features(audios)
        return self.backbone.encode_speech(mel, lengths)

    def instruction(self, task: Task, opts: DecodeOptions) -> str | None:
        pool = self.registry.prompts[task.tag]
        choice = pool[opts.prompt_index % len(pool)]
        return None if choice == "<no_prompt>" else choice

    @torch.no_grad()
    def answer(self, speech: torch.Tensor, speech_lengths: torch.Tensor, instructions: Sequence[str | None],
               output_type: str = "text", opts: DecodeOptions | None = None) -> list[str]:
        """One text answer per row of ``speech``, each for its own instruction."""
        opts = opts or DecodeOptions()
        prompts = [self.builder.prompt(output_type, [Turn.spoken(int(n), instr)])
                   for instr, n in zip(instructions, speech_lengths)]
        ids = self.backbone.generate(prompts, speech, speech_lengths, eos_id=self.builder.eos_id,
                                     pad_id=self.tokenizer.pad_token_id, max_new_tokens=opts.max_new_tokens,
                                     num_beams=opts.num_beams)
        return [self.tokenizer.decode(x, skip_special_tokens=False).replace(self.tokenizer.pad_token, "").strip()
                for x in ids]
