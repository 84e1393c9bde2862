"""Training data for token2wav: (speech codes, log mel) pairs for the flow, (log mel, audio) segments for the vocoder.

Samples stream from shard sets (``osum.data.shardlist.resolve_shards``: a folder with ``index.json``, a list
file, a glob): ``KEY.flac`` + ``KEY.json`` with ``"speech_tokens": [ints]`` at 25 Hz. Each DataLoader worker
(of each rank) reads its own share of the shards (or, when there are fewer shards than readers, every
shard and its own share of the samples); the train stream is infinite, its shard order drawn per pass
from ``seed`` (and the step the run starts at, so a resumed run does not replay the first samples; the
position is not restored exactly), samples shuffled in a small buffer; the valid stream is one ordered pass.

* ``mode: flow``: ``codes`` (B, N) padded with 0, ``code_lengths``, ``mel`` (B, n_mels, 4 N) and
  ``mel_lengths`` = 4 x ``code_lengths`` (the frame rule of ``osum.token2wav.mel``: the audio is padded or
  cut to ``640 N`` samples first). A sample whose code count differs by more than one from what the
  tokenizer gives for its audio (``codes_for_samples``) is skipped, as are samples without audio or codes.
  ``audio_member`` takes the audio from another member of the sample (``reply_flac``: a dialogue sample's
  reply speech, whose codes ``osum.speech_tokens extract --member reply_flac`` wrote).
  Longer than ``max_seconds``: cropped at a code boundary (a random one in training) and counted.
  ``crop_fraction`` < 1 (training only): each clip is cut to a random window of at least that share of its codes,
  so the flow cannot learn a whole sentence by heart, only sounds in a local context.
* ``mode: vocoder``: ``audio`` (B, S) segments of ``segment_seconds`` (random offset in training; shorter
  clips padded with silence) and their ``mel`` (B, n_mels, S / hop). Codes are not needed.

Every skip is counted by reason and logged with its shard and key (``osum.data.skips.SkipCounter``); the
counts ride along in ``batch["skips"]`` for the stage to total.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from osum.data.audio import decode_audio
from osum.data.reader import RawSample, read_shard
from osum.data.shardlist import resolve_shards
from osum.data.skips import BadSample, SkipCounter
from osum.data.stream import rank_and_world
from osum.token2wav.mel import CODE_RATE, MelConfig, codes_for_samples, fit_to_codes, mel_spectrogram

log = logging.getLogger("osum.data")

MODES = ("flow", "vocoder")


def sample_codes(meta: Mapping[str, Any]) -> list[int]:
    """The sample's ``speech_tokens`` as ints; ``BadSample`` when absent or not non-negative integers."""
    codes = meta.get("speech_tokens")
    if codes is None:
        raise BadSample("no_speech_tokens")
    if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and c >= 0 for c in codes):
        raise BadSample("bad_speech_tokens", "speech_tokens must be a non-empty list of non-negative ints")
    return codes


def check_code_count(n_codes: int, n_samples: int) -> None:
    """``BadSample`` unless ``n_codes`` is within one code of what the tokenizer gives for the audio."""
    expected = codes_for_samples(n_samples)
    if abs(n_codes - expected) > 1:
        raise BadSample("speech_tokens_mismatch", f"{n_codes} codes for {n_samples / 16000:.2f} s of audio "
                        f"(the tokenizer gives {expected})")


class MelCodesStream(IterableDataset):
    """Batches of one mode from shards; see the module docstring."""

    def __init__(self, shards: list[str], mode: str, mel: MelConfig, batch_size: int, max_seconds: float,
                 segment_seconds: float, seed: int = 0, train: bool = True, buffer_size: int = 64,
                 audio_member: str | None = None, crop_fraction: float = 1.0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"token2wav data: mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"token2wav data: crop_fraction must be in (0, 1], got {crop_fraction}")
        if batch_size < 1:
            raise ValueError(f"token2wav data: batch_size must be >= 1, got {batch_size}")
        if max_seconds * CODE_RATE < 1 or segment_seconds * CODE_RATE < 1:
            raise ValueError(f"token2wav data: max_seconds and segment_seconds must be at least one code "
                             f"({1 / CODE_RATE} s), got {max_seconds}, {segment_seconds}")
        self.shards, self.mode, self.mel = list(shards), mode, mel
        self.batch_size, self.seed, self.train, self.buffer_size = batch_size, seed, train, max(buffer_size, 1)
        self.audio_member, self.crop_fraction = audio_member, crop_fraction
        self.max_codes = int(max_seconds * CODE_RATE)
        self.segment_codes = int(round(segment_seconds * CODE_RATE))
        self.rank, self.world = rank_and_world()  # captured in the main process, valid in every worker

    # ------------------------------------------------------------------ one sample
    def example(self, sample: RawSample, rng: random.Random, skips: SkipCounter) -> dict[str, Any] | None:
        """The tensors of one sample, or None (counted in ``skips``) when it cannot be used."""
        try:
            audio = sample.members.get(self.audio_member) if self.audio_member else sample.audio
            if audio is None:
                raise BadSample("no_audio", f"no member {self.audio_member!r}" if self.audio_member else "")
            codes = sample_codes(sample.meta) if self.mode == "flow" else None
            wav = decode_audio(audio)
            if codes is not None:
                check_code_count(len(codes), len(wav))
        except BadSample as e:
            skips.skip(e.reason, sample.shard.rsplit("/", 1)[-1], sample.key, e.detail)
            return None
        if codes is None:
            return self._segment(sample.key, wav, rng)
        size = min(len(codes), self.max_codes)
        if size < len(codes):
            skips.skip("cropped_too_long", sample.shard.rsplit("/", 1)[-1], sample.key,
                       f"{len(codes)} codes cropped to {self.max_codes}")
        if self.train and self.crop_fraction < 1.0:
            size = rng.randint(max(1, math.ceil(self.crop_fraction * size)), size)
        if size < len(codes):  # one window, at a random code boundary in training
            start = rng.randrange(len(codes) - size + 1) if self.train else 0
            codes = codes[start : start + size]
            wav = wav[start * self.samples_per_code :]
        wav = fit_to_codes(wav, len(codes), self.mel)
        # whose voice: the sample's speaker for its own audio; another member's voice (a dialogue reply) is not named
        speaker = None if self.audio_member else sample.meta.get("speaker")
        return {"key": sample.key, "codes": torch.tensor(codes, dtype=torch.long), "mel": mel_spectrogram(wav, self.mel),
                "seconds": len(wav) / self.mel.sample_rate, "speaker": speaker}

    @property
    def samples_per_code(self) -> int:
        return self.mel.frames_per_code * self.mel.hop_length

    def _segment(self, key: str, wav: np.ndarray, rng: random.Random) -> dict[str, Any]:
        n = self.segment_codes * self.samples_per_code
        if len(wav) > n:
            start = rng.randrange(len(wav) - n + 1) if self.train else 0
            wav = wav[start : start + n]
        seconds = len(wav) / self.mel.sample_rate
        wav = np.pad(wav, (0, n - len(wav)))
        return {"key": key, "audio": torch.from_numpy(wav), "mel": mel_spectrogram(wav, self.mel), "seconds": seconds}

    # ------------------------------------------------------------------ a batch
    def collate(self, examples: list[dict[str, Any]], skips: SkipCounter) -> dict[str, Any]:
        batch: dict[str, Any] = {"keys": [e["key"] for e in examples], "skips": skips.take_unreported(),
                                 "audio_seconds": float(sum(e["seconds"] for e in examples))}
        if self.mode == "vocoder":
            batch["audio"] = torch.stack([e["audio"] for e in examples])
            batch["mel"] = torch.stack([e["mel"] for e in examples])
            return batch
        lengths = torch.tensor([len(e["codes"]) for e in examples])
        n = int(lengths.max())
        codes = torch.zeros(len(examples), n, dtype=torch.long)
        mel = torch.full((len(examples), self.mel.n_mels, n * self.mel.frames_per_code), math.log(self.mel.clamp))
        for i, e in enumerate(examples):
            codes[i, : len(e["codes"])] = e["codes"]
            mel[i, :, : e["mel"].shape[-1]] = e["mel"]
        batch.update(codes=codes, code_lengths=lengths, mel=mel, mel_lengths=lengths * self.mel.frames_per_code,
                     speakers=[e["speaker"] for e in examples])
        return batch

    # ------------------------------------------------------------------ the stream
    def _role(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world * workers

    def _samples(self, skips: SkipCounter, rng: random.Random, role: int, roles: int,
                 epoch: int) -> Iterator[RawSample]:
        order = list(self.shards)
        if self.train:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)  # the same order for every role
        split_shards = len(order) >= roles
        count = 0
        for i, shard in enumerate(order):
            if split_shards and i % roles != role:
                continue
            for sample in read_shard(shard, skips):
                count += 1
                if split_shards or (count - 1) % roles == role:
                    yield sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        role, roles = self._role()
        skips = SkipCounter()
        rng = random.Random(f"{self.seed}-{role}")
        buffer: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        epoch = 0
        while True:
            seen = produced = 0
            for sample in self._samples(skips, rng, role, roles, epoch):
                seen += 1
                ex = self.example(sample, rng, skips)
                if ex is None:
                    continue
                produced += 1
                if self.train:  # shuffle buffer
                    buffer.append(ex)
                    if len(buffer) < self.buffer_size:
                        continue
                    ex = buffer.pop(rng.randrange(len(buffer)))
                batch.append(ex)
                if len(batch) == self.batch_size:
                    yield self.collate(batch, skips)
                    batch = []
            if produced == 0 and (seen or self.train):  # every sample skipped, or nothing to loop over
                raise RuntimeError(f"token2wav data: no usable {self.mode} sample in a whole pass over "
                                   f"{len(self.shards)} shard(s) (reader {role} of {roles}): {skips.summary()}")
            if not self.train:
                break
            epoch += 1
        if batch:
            yield self.collate(batch, skips)
        if skips.total and not self.train:
            log.info("valid stream (reader %d): %s", role, skips.summary())


class MelCodesDataModule(L.LightningDataModule):
    """Train and valid loaders of ``MelCodesStream`` (``mode`` flow or vocoder) over shard sets."""

    def __init__(self, train: Any, valid: Any, batch_size: int = 16, max_seconds: float = 10.0,
                 num_workers: int = 2, seed: int = 0, mode: str = "flow", segment_seconds: float = 1.0,
                 mel: Mapping[str, Any] | None = None, buffer_size: int = 64, audio_member: str | None = None,
                 crop_fraction: float = 1.0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"data.mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"data.crop_fraction must be in (0, 1], got {crop_fraction}")
        self.mode, self.batch_size, self.max_seconds, self.segment_seconds = mode, batch_size, max_seconds, segment_seconds
        self.num_workers, self.seed, self.buffer_size, self.audio_member = num_workers, seed, buffer_size, audio_member
        self.crop_fraction = crop_fraction
        self.mel = MelConfig.from_dict(dict(mel or {}))
        self.train_sets = resolve_shards(train) if train else []  # shard paths
        self.valid_shards = resolve_shards(valid) if valid else []

    def stream(self, shards: list[str], train: bool, seed: int | None = None) -> MelCodesStream:
        return MelCodesStream(shards, self.mode, self.mel, self.batch_size, self.max_seconds, self.segment_seconds,
                              self.seed if seed is None else seed, train, self.buffer_size, self.audio_member,
                              self.crop_fraction)

    def _loader(self, stream: MelCodesStream, train: bool) -> DataLoader:
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=train and self.num_workers > 0,
                          prefetch_factor=4 if self.num_workers > 0 else None)

    def train_dataloader(self) -> DataLoader:
        if not self.train_sets:
            raise ValueError("data.train names no shards")
        trainer = getattr(self, "trainer", None)
        step = int(trainer.global_step) if trainer is not None else 0
        if step:
            log.info("token2wav data: starting the train stream afresh at step %d (a new shard order)", step)
        return self._loader(self.stream(self.train_sets, True, self.seed + 7919 * step), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.stream(self.valid_shards, False), train=False)
