"""Import a JSONL manifest in our sample schema into shards, with index and rejects report.

    python -m data_prep.import_jsonl MANIFEST.jsonl --out OUT [--workers N] [--shard-size 1000]
        [--max-seconds 30] [--label-sets osum|mini] [--force]

One JSON object per line: ``key``, ``audio`` (a path, absolute or relative to the manifest's folder),
optional ``start``/``end`` (seconds: the cut of the recording that is the sample), and any schema
fields of design section 3 (``txt``, ``labels``, ``words``, ``question``, ``answer``, ``task``,
``domain``, ``lang``, ``speaker`` ...), copied into the sample JSON as they are; ``duration`` is
measured. A line that is not an object with a key and an audio path is rejected (``malformed_line``,
``missing_key``, ``missing_audio``, ``bad_segment``); blank lines are skipped. See
data_prep/importing.py for the validation and the output.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.importing import (
    ImportItem,
    Reject,
    keyed_source,
    read_jsonl,
    run_cli,
)

SOURCE_FIELDS = ("key", "audio", "start", "end")


def manifest_items(manifest: str | Path) -> tuple[list[ImportItem], list[Reject]]:
    """Import items of a manifest in line order, and the rejects of lines that cannot become items."""
    manifest = Path(manifest)
    records, rejects = read_jsonl(manifest)
    items = []
    for where, record in records:
        source = keyed_source(where, record, "audio", manifest.parent)
        if isinstance(source, Reject):
            rejects.append(source)
            continue
        key, audio = source
        meta = {name: value for name, value in record.items() if name not in SOURCE_FIELDS}
        items.append(ImportItem(key, audio, meta))
    return items, rejects


def main(argv: list[str] | None = None) -> None:
    run_cli("data_prep.import_jsonl", __doc__, "JSONL manifest, one sample per line", manifest_items, argv)


if __name__ == "__main__":
    main()
