"""`python -m osum.decode`: batched generation over shards, hypotheses next to references, scores.

For every test sample and every requested task the sample can serve, the model generates an answer
(greedy or beam search, with the KV cache); the answer is parsed back into fields by the task registry
and scored: WER on transcripts (tags removed; also per sample domain), accuracy and confusion per tag
type, average alignment shift (ms) for word timestamps, exact match of chat answers. Writes
``hyp.jsonl``, ``report.json`` and ``report.txt`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from osum.data.audio import decode_audio
from osum.data.reader import read_shard
from osum.data.shardlist import resolve_shards
from osum.data.skips import BadSample, SkipCounter
from osum.inference import DecodeOptions, SpeechAssistant
from osum.metrics.report import METRIC_OF_KIND, Report
from osum.tasks import Task, TaskRegistry

log = logging.getLogger("osum.decode")


def reference_fields(registry: TaskRegistry, task: Task, meta: dict) -> dict:
    """The reference fields of a sample for ``task`` (parsed from the rendered target of original shards)."""
    if "target" in meta:
        return registry.parse(task, str(meta["target"]))
    ref = {"transcript": registry.transcript(meta), "answer": " ".join(str(meta.get("answer", "")).split()).lower(),
           "words": [tuple(w) for w in meta.get("words") or []]}
    for f in task.label_fields:
        labels = registry.labels_of(meta, f)
        ref[f] = labels[0] if labels else None
    return ref


def score(report: Report, registry: TaskRegistry, task: Task, meta: dict, hyp: dict) -> None:
    """Add one hypothesis to the task's metrics (``Task.metrics``); WER also per sample domain."""
    ref = reference_fields(registry, task, meta)
    domains = [str(meta["domain"])] if meta.get("domain") else []
    for m in task.metrics:
        options = ({"kind": m.field, "labels": registry.rendering.label_sets.get(m.field)}
                   if m.kind == "tag_accuracy" else {})
        value = hyp[m.field] if m.field in hyp else type(ref[m.field])()  # a field the parser did not find: empty
        for group in [None, *domains] if m.kind == "wer" else [None]:
            report.metric(task.tag, m.name, METRIC_OF_KIND[m.kind], group=group, **options).add(ref[m.field], value)


def decode(assistant: SpeechAssistant, shards: list[str], tasks: list[str], out_dir: Path, batch_size: int = 16,
           opts: DecodeOptions | None = None, limit: int | None = None) -> Report:
    registry = assistant.registry
    task_objs = [registry.get(t) for t in tasks]
    report, skips = Report(), SkipCounter()
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for shard in shards:
        for raw in read_shard(shard, skips):
            try:
                samples.append((raw, decode_audio(raw.audio) if raw.audio else None))
            except BadSample as e:
                skips.skip(e.reason, Path(shard).name, raw.key, e.detail)
            if limit and len(samples) >= limit:
                break
    samples = [s for s in samples if s[1] is not None]
    samples.sort(key=lambda s: s[1].size)
    with open(out_dir / "hyp.jsonl", "w", encoding="utf-8") as hyp_file, tqdm(total=len(samples), desc="decode") as bar:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            speech, lengths = assistant.speech([a for _, a in chunk])
            for task in task_objs:
                rows = [i for i, (raw, _) in enumerate(chunk)
                        if (raw.meta.get("task") and registry.get(raw.meta["task"]).tag == task.tag)
                        or (not raw.meta.get("task") and registry.can_serve(task, raw.meta))]
                if not rows:
                    continue
                idx = torch.tensor(rows, device=speech.device)
                hyps = assistant.answer(speech[idx], lengths[idx],
                                        [assistant.instruction(task, opts or DecodeOptions())] * len(rows),
                                        task.output_type, opts)
                for i, hyp_text in zip(rows, hyps):
                    raw = chunk[i][0]
                    parsed = registry.parse(task, hyp_text)
                    score(report, registry, task, raw.meta, parsed)
                    ref = raw.meta["target"] if "target" in raw.meta else registry.render(task, raw.meta)
                    hyp_file.write(json.dumps({"key": raw.key, "task": task.tag, "ref": ref, "hyp": hyp_text},
                                              ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    report.write(out_dir)
    if skips.total:
        log.warning("%s", skips.summary())
        skips.write(out_dir / "skipped_samples.json")
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.decode", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt) or an osum.export folder")
    p.add_argument("--shards", required=True, nargs="+", help="shard directory, list file, glob or paths")
    p.add_argument("--out", required=True, help="output directory for hyp.jsonl and the report")
    p.add_argument("--tasks", nargs="+", default=None,
                   help="task tag strings to decode (default: the task registry's decode tasks, one per kind of field)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="decode at most this many samples")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        shards = resolve_shards(args.shards)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    assistant = SpeechAssistant.load(args.ckpt, args.device)
    tasks = args.tasks or assistant.registry.decode_tasks()
    report = decode(assistant, shards, tasks, Path(args.out), args.batch_size,
                    DecodeOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam), args.limit)
    print(report.format_table())
    print(f"wrote {args.out}/report.json, report.txt, hyp.jsonl")


if __name__ == "__main__":
    main()
