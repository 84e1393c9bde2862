"""Dynamic batches under a token budget, bucketed by length, homogeneous in batch group.

A batch group is the output type, or a task group that ``data.task_groups`` names (such as the X-only
tag tasks, whose one-token targets would otherwise be a sliver of the tokens of every batch they share
with transcripts).

Cost of a batch = max over its samples of the LLM length times the batch size (what padding makes the
LLM compute), and for the encoder the longest clip times the number of clips (an example carries one clip
per turn with audio: the current one and history turns; a text-only example has none and costs no
frames). Examples wait in one sort buffer, apart by batch group; when it holds ``buffer_size`` examples,
each group's share is bucketed in two dimensions (split into ``frame_groups`` groups by mel frames, each
group sorted by LLM length) and cut into batches, and the batches of every group are shuffled together:
the batch stream mixes the groups in their proportions (a buffer per group, cut when that group alone was
full, handed out one group's batches in runs of a hundred steps). The frame buckets have fixed bounds, read from the
shard index at start (equal-count duration quantiles of the training set), or, without an index, split
each buffer into groups of equal count. Batches then hold samples of similar length in both, and
padding stays small. LLM length and audio length are only loosely related (prompts and targets vary
by task), which is why one sort key is not enough; the few frame buckets leave some audio padding,
which the model removes by running the encoder in sub-batches of similar audio length
(``model.encoder_sub_batches``, ``osum.models.encoder.length_groups``). The batcher's whole state (waiting examples,
batches cut but not yet handed out, its RNG) can be described by sample references, so a resumed
stream rebuilds it exactly.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from osum.data.features import FRAMES_PER_SECOND, HOP
from osum.data.index import duration_bounds, entries_for
from osum.data.processing import Example
from osum.template import IGNORE


@dataclass
class BatchLimits:
    max_tokens: int = 4096  # LLM positions incl. padding
    max_frames: int = 60000  # mel frames incl. padding
    max_samples: int = 64
    buffer_size: int = 256  # examples waiting before they are cut (all batch groups together)
    frame_groups: int = 2  # buckets by mel frames inside a buffer, each then sorted by LLM length
    buckets: str = "index"  # frame bucket bounds: "index" (from index.json, when every shard has one) or "buffer"
    frame_bounds: tuple[int, ...] = ()  # inner bounds in mel frames, set at start from the index

    def __post_init__(self):
        if self.buckets not in ("index", "buffer"):
            raise ValueError(f"data.batch.buckets must be 'index' or 'buffer', got {self.buckets!r}")


def batch_fits(batch: list[Example], ex: Example, limits: BatchLimits) -> bool:
    n = len(batch) + 1
    if n > limits.max_samples:
        return False
    longest = max(ex.length, max((b.length for b in batch), default=0))
    clip = max(ex.longest_clip, max((b.longest_clip for b in batch), default=0))
    clips = len(ex.clips) + sum(len(b.clips) for b in batch)
    return longest * n <= limits.max_tokens and clip * clips <= limits.max_frames


def index_frame_bounds(shards: Iterable[str], groups: int) -> tuple[int, ...] | None:
    """Inner frame-bucket bounds (mel frames) splitting the samples of ``shards`` into ``groups``
    equal-count length buckets, from their index; ``None`` when a shard has no index entry."""
    entries = entries_for(shards)
    if entries is None:
        return None
    return tuple(int(b * FRAMES_PER_SECOND) for b in duration_bounds(entries, groups))


def frame_buckets(examples: list[Example], limits: BatchLimits) -> list[list[Example]]:
    """Groups of examples of similar audio length: by the fixed bounds, else equal-count groups
    (the order inside a group does not matter: cut_batches sorts each group)."""
    if limits.frame_bounds:
        groups: list[list[Example]] = [[] for _ in range(len(limits.frame_bounds) + 1)]
        for ex in examples:
            groups[bisect.bisect_right(limits.frame_bounds, ex.frames)].append(ex)
        return [g for g in groups if g]
    by_frames = sorted(examples, key=lambda e: (e.frames, e.length, e.key))
    size = max(-(-len(by_frames) // max(limits.frame_groups, 1)), 1)
    return [by_frames[start : start + size] for start in range(0, len(by_frames), size)]


def cut_batches(examples: list[Example], limits: BatchLimits) -> list[list[Example]]:
    batches: list[list[Example]] = []
    for group in frame_buckets(examples, limits):
        current: list[Example] = []
        for ex in sorted(group, key=lambda e: (e.length, e.frames, e.key)):
            if current and not batch_fits(current, ex, limits):
                batches.append(current)
                current = []
            current.append(ex)
        if current:
            batches.append(current)
    return batches


class Batcher:
    """Collects examples per batch group; cut batches wait in ``pending`` until they are taken."""

    def __init__(self, limits: BatchLimits, rng: random.Random):
        self.limits, self.rng = limits, rng
        self.buffers: dict[str, list[Example]] = {}
        self.pending: list[list[Example]] = []  # cut and shuffled, in the order they were cut

    def add(self, ex: Example) -> None:
        self.buffers.setdefault(ex.group, []).append(ex)
        if sum(map(len, self.buffers.values())) >= self.limits.buffer_size:
            self.flush()

    def flush(self) -> None:
        """Cut every group's waiting examples; their batches join the pending ones in a shuffled order."""
        batches = [b for group in sorted(self.buffers) for b in cut_batches(self.buffers[group], self.limits)]
        self.buffers = {}
        self.rng.shuffle(batches)
        self.pending += batches

    def take(self, group: str | None = None) -> list[Example] | None:
        """The oldest pending batch (of batch group ``group`` if given), or ``None``."""
        for i, batch in enumerate(self.pending):
            if group is None or batch[0].group == group:
                return self.pending.pop(i)
        return None

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"buffers": {t: [e.ref for e in b] for t, b in self.buffers.items()},
                "pending": [[e.ref for e in b] for b in self.pending],
                "rng": self.rng.getstate()}

    def restore(self, state: dict, lookup: Callable[[tuple], Example]) -> None:
        """Rebuild from ``state``; ``lookup`` turns a sample reference back into its example."""
        self.buffers = {t: [lookup(tuple(r)) for r in refs] for t, refs in state["buffers"].items()}
        self.pending = [[lookup(tuple(r)) for r in refs] for refs in state["pending"]]
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    def references(self, state: dict) -> list[tuple]:
        return [tuple(r) for refs in state["buffers"].values() for r in refs] + [
            tuple(r) for refs in state["pending"] for r in refs]


def right_padded(rows: list[torch.Tensor], value: float = 0) -> torch.Tensor:
    """(B, longest, ...) with each row at the start of its slot and ``value`` after it."""
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)


def collate(batch: list[Example], pad_id: int) -> dict:
    """Right-padded tensors plus the per-sample bookkeeping the stages and decoding need.

    Sequences: ``input_ids`` (pad id), ``text_targets`` and ``speech_targets`` (IGNORE), (B, L). Clips,
    flattened in placeholder order (sample-major, turn order), N of them: ``mel`` (N, T, n_mels) and
    ``mel_lengths``, or with ``data.features: model`` ``audio`` / ``audio_lengths`` / ``spec_masks``;
    ``clip_keys`` (encoder-cache keys), ``clip_sample`` (the row of each clip), ``ctc_targets`` /
    ``ctc_lengths`` (0 = none); ``cropped``: per sample, whether its clip was cut to ``filters.max_seconds``.
    Every clip entry is ``None`` (or absent) when no sample has audio.
    """
    out = {"keys": [e.key for e in batch], "shards": [e.shard for e in batch], "tasks": [e.task for e in batch],
           "output_type": batch[0].output_type, "group": batch[0].group,
           "input_ids": right_padded([torch.tensor(e.input_ids) for e in batch], pad_id),
           "text_targets": right_padded([torch.tensor(e.text_targets) for e in batch], IGNORE),
           "speech_targets": right_padded([torch.tensor(e.speech_targets) for e in batch], IGNORE),
           "meta": [e.meta for e in batch], "cropped": [e.cropped_from is not None for e in batch],
           "audio_seconds": sum(e.seconds for e in batch),
           "mel": None, "mel_lengths": None, "clip_keys": None, "clip_sample": None}
    clips = [c for e in batch for c in e.clips]
    if not clips:
        return out
    out["clip_keys"] = [c.key for c in clips]
    out["clip_sample"] = torch.tensor([i for i, e in enumerate(batch) for _ in e.clips], dtype=torch.long)
    if clips[0].mel is not None:
        out["mel"], out["mel_lengths"] = right_padded([c.mel for c in clips]), torch.tensor([c.frames for c in clips])
    else:  # data.features: model: waveforms, and masks for the model to apply
        out["audio"] = right_padded([c.audio for c in clips])
        out["audio_lengths"] = torch.tensor([int(c.audio.shape[0]) for c in clips])
        out["mel_lengths"] = out["audio_lengths"] // HOP
        if any(c.spec_masks for c in clips):  # clips without masks (history turns) get no-op rows
            width = max(len(c.spec_masks or ()) for c in clips)
            rows = [list(c.spec_masks or ()) + [(0, 0, 0)] * (width - len(c.spec_masks or ())) for c in clips]
            out["spec_masks"] = torch.tensor(rows, dtype=torch.long)
    if any(c.ctc_ids for c in clips):  # transcripts for the auxiliary CTC loss; length 0 = none
        ctc = [torch.tensor(c.ctc_ids or [], dtype=torch.long) for c in clips]
        out["ctc_targets"], out["ctc_lengths"] = right_padded(ctc), torch.tensor([len(c) for c in ctc])
    return out
