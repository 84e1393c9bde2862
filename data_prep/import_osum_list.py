"""Import an original OSUM raw list (reference section 3.1) into shards in our layout.

    python -m data_prep.import_osum_list data.list --out OUT [--workers N] [--shard-size 1000]
        [--max-seconds 30] [--label-sets osum|mini] [--force]

Each line is ``{"key", "wav", "txt", "task", "extra"}`` with optional ``lang``, ``speaker`` and
``start``/``end``. The original ``txt`` is the already-rendered target, so a sample JSON holds
``target`` (that text) and ``task`` (its tag string; a line without one is ``<TRANSCRIBE>``, whose
prompt pool the original uses for it): what osum/data/reader.py makes of an original shard.
``extra`` is kept whole as ``extra``; its tag-type entries (``age``, ``gender``, ``emotion``,
``style``, ``events``; also read at the top level of the line), e.g. ``"<ADULT>"``, also go into
``labels`` in canonical form (``"none"`` counts as absent). Relative ``wav`` paths are relative to
the list's folder. See data_prep/importing.py for the validation and the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.importing import (
    ImportItem,
    Reject,
    keyed_source,
    read_jsonl,
    run_cli,
)
from osum.tasks.registry import LABEL_FIELDS

DEFAULT_TASK = "<TRANSCRIBE>"
ABSENT = "none"


def labels_of(record: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Tag-type fields of a line (top level first, then ``extra``) as sample labels."""
    labels: dict[str, Any] = {}
    for kind in LABEL_FIELDS:
        value = record.get(kind, extra.get(kind))
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", ABSENT)):
            continue
        labels[kind] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return labels


def sample_meta(record: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Sample JSON of one raw-list line: target, task, lang, speaker, extra, labels."""
    meta: dict[str, Any] = {"target": str(record.get("txt") or ""), "task": record.get("task") or DEFAULT_TASK}
    for name in ("lang", "speaker"):
        if record.get(name) and str(record[name]).lower() != ABSENT:
            meta[name] = str(record[name])
    if extra:
        meta["extra"] = extra
    labels = labels_of(record, extra)
    if labels:
        meta["labels"] = labels
    return meta


def raw_list_items(raw_list: str | Path) -> tuple[list[ImportItem], list[Reject]]:
    """Import items of a raw list in line order, and the rejects of lines that cannot become items."""
    raw_list = Path(raw_list)
    records, rejects = read_jsonl(raw_list)
    items = []
    for where, record in records:
        source = keyed_source(where, record, "wav", raw_list.parent)
        if isinstance(source, Reject):
            rejects.append(source)
            continue
        key, audio = source
        extra = record.get("extra") or {}
        if not isinstance(extra, dict):
            rejects.append(Reject(key, "malformed_line", f"{where}: 'extra' is not an object"))
            continue
        items.append(ImportItem(key, audio, sample_meta(record, extra)))
    return items, rejects


def main(argv: list[str] | None = None) -> None:
    run_cli("data_prep.import_osum_list", __doc__, "original OSUM raw list (JSONL)", raw_list_items, argv)


if __name__ == "__main__":
    main()
