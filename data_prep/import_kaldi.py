"""Import a Kaldi data directory into shards (16 kHz FLAC + JSON), with index and rejects report.

    python -m data_prep.import_kaldi DATA_DIR --out OUT [--workers N] [--shard-size 1000]
        [--max-seconds 30] [--label-sets osum|mini] [--force]

Files read from DATA_DIR:
- ``wav.scp`` (required): ``RECORDING PATH`` or ``RECORDING COMMAND ... |`` (run through a shell,
  its stdout is the audio). Relative paths and commands are taken from the working directory, as in Kaldi.
- ``text`` (required): ``UTT TRANSCRIPT`` -> ``txt``. An utterance without a line has no ``txt``;
  a line with an empty transcript is rejected (``empty_transcript``).
- ``segments`` (optional): ``UTT RECORDING START END`` in seconds (``END`` -1: to the end); without
  it every recording is one utterance.
- ``utt2spk`` -> ``speaker``, ``utt2lang`` -> ``lang``, ``utt2domain`` -> ``domain``.
- ``utt2gender`` (or ``spk2gender`` through ``utt2spk``; Kaldi's ``m``/``f`` become MALE/FEMALE),
  ``utt2emotion``, ``utt2age``, ``utt2style``, ``utt2events`` (space-separated) -> ``labels``.
A key that occurs twice in one file stops the import with the file and line. Lines of the per-utterance
files that name no utterance are ignored with a warning. See data_prep/importing.py for the rest.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from data_prep.importing import (
    AudioSource,
    ImportItem,
    Reject,
    run_cli,
)

LABEL_FILES = {"gender": "utt2gender", "emotion": "utt2emotion", "age": "utt2age", "style": "utt2style",
               "events": "utt2events"}
FIELD_FILES = {"speaker": "utt2spk", "lang": "utt2lang", "domain": "utt2domain"}
KALDI_GENDERS = {"m": "MALE", "f": "FEMALE"}


def read_table(path: Path) -> dict[str, str]:
    """``KEY VALUE...`` lines -> {key: value} (value may be empty); ValueError on a repeated key."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if fields[0] in table:
                raise ValueError(f"{path}:{number}: key {fields[0]!r} occurs twice")
            table[fields[0]] = fields[1].strip() if len(fields) > 1 else ""
    return table


def audio_source(scp_value: str) -> AudioSource:
    """A ``wav.scp`` value: a pipe command (ending in ``|``) or a path."""
    if scp_value.endswith("|"):
        return AudioSource(command=scp_value[:-1].strip())
    return AudioSource(path=str(Path(scp_value).resolve()))


def utterance_sources(data_dir: Path) -> tuple[dict[str, AudioSource], list[Reject]]:
    """utt -> audio source (recordings, or segments of them), and rejects for broken segment lines."""
    recordings = {rec: audio_source(value) for rec, value in read_table(data_dir / "wav.scp").items()}
    if not (data_dir / "segments").is_file():
        return recordings, []
    sources: dict[str, AudioSource] = {}
    rejects = []
    for utt, value in read_table(data_dir / "segments").items():
        try:
            recording, start, end = value.split()
            start_s, end_s = float(start), float(end)
        except ValueError:
            rejects.append(Reject(utt, "bad_segment", f"segments line {utt} {value}"))
            continue
        if recording not in recordings:
            rejects.append(Reject(utt, "missing_audio", f"recording {recording!r} is not in wav.scp"))
            continue
        sources[utt] = dataclasses.replace(recordings[recording], start=start_s, end=end_s if end_s >= 0 else None)
    return sources, rejects


def utterance_annotations(data_dir: Path, utts: set[str]) -> dict[str, dict[str, Any]]:
    """utt -> meta fields and labels from the optional per-utterance files."""
    meta: dict[str, dict[str, Any]] = {utt: {} for utt in utts}
    for name, file in FIELD_FILES.items():
        for utt, value in _per_utterance(data_dir / file, utts).items():
            meta[utt][name] = value
    for kind, value_by_utt in _label_tables(data_dir, utts).items():
        for utt, value in value_by_utt.items():
            meta[utt].setdefault("labels", {})[kind] = value.split() if kind == "events" else value
    return meta


def _label_tables(data_dir: Path, utts: set[str]) -> dict[str, dict[str, str]]:
    tables = {kind: _per_utterance(data_dir / file, utts) for kind, file in LABEL_FILES.items()}
    if not tables["gender"] and (data_dir / "spk2gender").is_file() and (data_dir / "utt2spk").is_file():
        gender_of_speaker = read_table(data_dir / "spk2gender")
        speakers = _per_utterance(data_dir / "utt2spk", utts)
        tables["gender"] = {utt: gender_of_speaker[spk] for utt, spk in speakers.items() if spk in gender_of_speaker}
    tables["gender"] = {utt: KALDI_GENDERS.get(value.lower(), value) for utt, value in tables["gender"].items()}
    return tables


def _per_utterance(path: Path, utts: set[str]) -> dict[str, str]:
    """The lines of an optional per-utterance file that name a known utterance."""
    if not path.is_file():
        return {}
    table = read_table(path)
    unknown = [utt for utt in table if utt not in utts]
    if unknown:
        print(f"warning: {path}: {len(unknown)} line(s) name no utterance (e.g. {unknown[0]!r}); ignored",
              file=sys.stderr)
    return {utt: value for utt, value in table.items() if utt in utts}


def kaldi_items(data_dir: str | Path) -> tuple[list[ImportItem], list[Reject]]:
    """Import items of a Kaldi data directory (in the order of ``segments`` or ``wav.scp``) and the
    rejects of utterances that cannot become items."""
    data_dir = Path(data_dir)
    sources, rejects = utterance_sources(data_dir)
    texts = read_table(data_dir / "text")
    rejected = {reject.key for reject in rejects}
    rejects += [Reject(utt, "missing_audio", "in text, not in wav.scp or segments")
                for utt in texts if utt not in sources and utt not in rejected]
    annotations = utterance_annotations(data_dir, set(sources))
    items = []
    for utt, source in sources.items():
        meta = {"txt": texts[utt]} if utt in texts else {}
        items.append(ImportItem(utt, source, {**meta, **annotations[utt]}))
    return items, rejects


def main(argv: list[str] | None = None) -> None:
    run_cli("data_prep.import_kaldi", __doc__, "Kaldi data directory (wav.scp, text, ...)", kaldi_items, argv)


if __name__ == "__main__":
    main()
