"""A trained model ready to answer: backbone, tokenizer, sequence builder and task registry together.

Used by `osum.decode` (batches over shards) and `osum.infer` (one file); both lay out prompts with the
same ``SequenceBuilder`` as training did. Loads a training checkpoint or an `osum.export` folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from osum.data.features import log_mel_batch
from osum.models.artifacts import load_backbone
from osum.models.generation import GREEDY, PhasePlan, generate, settings_for
from osum.tasks import Task
from osum.template import Reply, Text, Turn
from osum.text import build_text_side


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
        """From a training checkpoint of any stage."""
        return cls.load(path, device)

    @classmethod
    def from_export(cls, directory: str, device: str = "cpu") -> SpeechAssistant:
        """From a folder written by ``osum.export`` (merged LLM, no checkpoint or source folders needed)."""
        return cls.load(directory, device)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> SpeechAssistant:
        """An export folder (it holds ``osum.yaml``) or a training checkpoint."""
        backbone, text_cfg = load_backbone(path, device)
        return cls(backbone, text_cfg, device)

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

    @torch.no_grad()
    def respond(self, output_type: str, turns: Sequence[list[Turn]], speech: torch.Tensor | None = None,
                speech_lengths: torch.Tensor | None = None, greedy: bool = False,
                generator: torch.Generator | None = None, max_new_tokens: int | None = None) -> list[Reply]:
        """One reply per sample of any output type (think, text, speech codes), through the phased generation loop
        with the output type's plan and sampling (reference 5.6; ``greedy`` for deterministic decoding).
        ``speech`` holds the embeddings of every sample's clips, in placeholder order."""
        out = self.builder.output_type(output_type)
        _, text_sampling, speech_sampling = settings_for(out)
        plan = PhasePlan.from_dict(self.builder.plan(output_type))  # with the builder's token ids (think end)
        if greedy:
            text_sampling = speech_sampling = GREEDY
        if max_new_tokens:
            plan = replace(plan, max_new_tokens=max_new_tokens)
        prompts = [self.builder.prompt(output_type, list(t)) for t in turns]
        rows = generate(self.backbone, prompts, speech, speech_lengths, plan, self.builder.eos_id,
                        text_sampling, speech_sampling, generator)
        return [self.builder.parse(output_type, r.text_ids, r.speech_codes) for r in rows]

    @torch.no_grad()
    def speech_codes(self, texts: Sequence[str], output_type: str = "text2token", greedy: bool = False,
                     generator: torch.Generator | None = None, max_new_tokens: int | None = None) -> list[list[int]]:
        """TTS: the speech codes the model generates for each text (``S c1..cn S``, between the boundaries), with
        the output type's sampling (reference 5.6: top-k 15, top-p 0.8, temperature 1.2) unless ``greedy``."""
        replies = self.respond(output_type, [[Turn([Text(t)])] for t in texts], greedy=greedy, generator=generator,
                               max_new_tokens=max_new_tokens)
        return [r.speech for r in replies]
