"""`python -m osum.diagnose probe --ckpt X --train-shards A --test-shards B`: where the tag information is lost;
`python -m osum.diagnose context --ckpt X --shards T`: whether a dialogue model reads its context
(``osum.evaluate.context_probes``).

For each label kind (gender, age, emotion, style, events) a linear probe (multinomial logistic regression,
fit on the train shards, scored on the test shards) reads three places of a trained model:

* ``encoder``: the mean-pooled output of its Whisper encoder: the information the model starts from (the
  ceiling, as far as a linear read-out finds it);
* ``speech``: the mean-pooled speech embeddings the LLM receives (adapter output, utterance slot included);
* ``decoded``: what the model itself answers for the kind's X-only task (e.g. ``<GENDER>``), greedy.

A kind whose encoder probe is high but whose speech probe has dropped is lost in the adapter; one whose
speech probe is high but whose decoded accuracy is low is lost in the LLM (or not yet learned there).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from osum.data.audio import decode_audio
from osum.data.reader import read_shard
from osum.data.shardlist import resolve_shards
from osum.data.skips import BadSample, SkipCounter
from osum.inference import DecodeOptions, SpeechAssistant
from osum.models.encoder import lengths_to_mask

log = logging.getLogger("osum.diagnose")

X_ONLY_TASK = {"gender": "<GENDER>", "age": "<AGE>", "emotion": "<EMOTION>", "style": "<STYLE>", "events": "<CAPTION>"}


@dataclass
class Probed:
    """Pooled features of a set of samples, and their labels per kind (None where a sample has none)."""

    encoder: torch.Tensor
    speech: torch.Tensor
    labels: dict[str, list[str | None]]
    decoded: dict[str, list[str | None]]


def load_samples(shards: Sequence[str], limit: int) -> list[tuple[np.ndarray, dict]]:
    samples, skips = [], SkipCounter()
    for shard in shards:
        for raw in read_shard(shard, skips):
            if raw.audio is None:
                continue
            try:
                samples.append((decode_audio(raw.audio), raw.meta))
            except BadSample:
                continue
            if len(samples) >= limit:
                return samples
    return samples


def mean_pool(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = lengths_to_mask(lengths, x.shape[1])[..., None].to(x.dtype)
    return (x * mask).sum(1) / lengths.clamp(min=1)[:, None].to(x.dtype)


@torch.no_grad()
def probe_features(assistant: SpeechAssistant, samples: list[tuple[np.ndarray, dict]], kinds: Sequence[str],
                   decode: bool, batch_size: int = 32) -> Probed:
    """Pooled encoder output and speech embeddings of every sample; decoded X-only answers when ``decode``."""
    model, registry = assistant.backbone, assistant.registry
    order = sorted(range(len(samples)), key=lambda i: samples[i][0].size)
    enc_rows: dict[int, torch.Tensor] = {}
    speech_rows: dict[int, torch.Tensor] = {}
    decoded: dict[str, dict[int, str | None]] = {k: {} for k in kinds}
    opts = DecodeOptions(max_new_tokens=8)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        mel, mel_lengths = assistant.features([samples[i][0] for i in idx])
        enc, enc_lengths = model._run_encoder(mel, mel_lengths)
        speech, speech_lengths = model.encode_speech(mel, mel_lengths)
        for row, i in enumerate(idx):
            enc_rows[i] = mean_pool(enc[row : row + 1], enc_lengths[row : row + 1])[0].float().cpu()
            speech_rows[i] = mean_pool(speech[row : row + 1], speech_lengths[row : row + 1])[0].float().cpu()
        if not decode:
            continue
        for kind in kinds:
            task = registry.get(X_ONLY_TASK[kind])
            answers = assistant.answer(speech, speech_lengths, [assistant.instruction(task, opts)] * len(idx),
                                       task.output_type, opts)
            for i, text in zip(idx, answers):
                decoded[kind][i] = registry.parse(task, text).get(kind)
    labels = {k: [first(registry.labels_of(meta, k)) for _, meta in samples] for k in kinds}
    n = len(samples)
    return Probed(torch.stack([enc_rows[i] for i in range(n)]), torch.stack([speech_rows[i] for i in range(n)]),
                  labels, {k: [decoded[k].get(i) for i in range(n)] for k in kinds})


def first(values: list[str]) -> str | None:
    return values[0] if values else None


def linear_probe(train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str],
                 steps: int = 300, weight_decay: float = 1e-3) -> float:
    """Accuracy on the test set of a multinomial logistic regression fit on standardized train features."""
    classes = sorted(set(train_y))
    if len(classes) < 2 or not test_y:
        return float("nan")
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xa, xb = (train_x - mean) / std, (test_x - mean) / std
    ya = torch.tensor([classes.index(y) for y in train_y])
    torch.manual_seed(0)
    layer = torch.nn.Linear(xa.shape[1], len(classes))
    opt = torch.optim.Adam(layer.parameters(), lr=0.01, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(layer(xa), ya).backward()
        opt.step()
    pred = [classes[i] for i in layer(xb).argmax(1).tolist()]
    return sum(p == y for p, y in zip(pred, test_y)) / len(test_y)


def probe_table(assistant: SpeechAssistant, train: Probed, test: Probed, kinds: Sequence[str]) -> str:
    lines = [f"{'kind':<8} {'n_train':>7} {'n_test':>6} {'majority':>8} {'encoder':>8} {'speech':>8} {'decoded':>8}"]
    for kind in kinds:
        a = [i for i, y in enumerate(train.labels[kind]) if y is not None]
        b = [i for i, y in enumerate(test.labels[kind]) if y is not None]
        if not a or not b:
            continue
        ya, yb = [train.labels[kind][i] for i in a], [test.labels[kind][i] for i in b]
        majority = max(yb.count(c) for c in set(yb)) / len(yb)
        enc = linear_probe(train.encoder[a], ya, test.encoder[b], yb)
        speech = linear_probe(train.speech[a], ya, test.speech[b], yb)
        hyps = [test.decoded[kind][i] for i in b]
        decoded = sum(h == y for h, y in zip(hyps, yb)) / len(yb)
        lines.append(f"{kind:<8} {len(a):>7} {len(b):>6} {majority:>8.1%} {enc:>8.1%} {speech:>8.1%} {decoded:>8.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.diagnose", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe", help="linear probes per tag kind: encoder, speech embeddings, decoded")
    probe.add_argument("--ckpt", required=True, help="a training checkpoint or an osum.export folder")
    probe.add_argument("--train-shards", required=True, nargs="+", help="shards the probes are fit on")
    probe.add_argument("--test-shards", required=True, nargs="+", help="shards they are scored on (held-out voices)")
    probe.add_argument("--kinds", nargs="+", default=list(X_ONLY_TASK), choices=list(X_ONLY_TASK))
    probe.add_argument("--limit", type=int, default=1200, help="samples read from each side")
    probe.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    context = sub.add_parser("context", help="does a dialogue model read its reply text, think and history?")
    context.add_argument("--ckpt", required=True, help="a dialogue checkpoint or an osum.export folder")
    context.add_argument("--shards", required=True, nargs="+", help="dialogue test shards with expect (and codes)")
    context.add_argument("--limit", type=int, default=48, help="first turns for the teacher-forced probes")
    context.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    assistant = SpeechAssistant.load(args.ckpt, args.device)
    if args.command == "context":
        from osum.evaluate.context_probes import run_probes
        from osum.evaluate.echat import read_cases

        print(json.dumps(run_probes(assistant, read_cases(args.shards), args.limit), indent=1))
        return
    train = probe_features(assistant, load_samples(resolve_shards(args.train_shards), args.limit), args.kinds, False)
    test = probe_features(assistant, load_samples(resolve_shards(args.test_shards), args.limit), args.kinds, True)
    print(f"linear probes (fit on {len(train.encoder)} train samples, scored on {len(test.encoder)} test samples) "
          "and the model's own X-only answers:")
    print(probe_table(assistant, train, test, args.kinds))


if __name__ == "__main__":
    main()
