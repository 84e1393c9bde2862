"""Open-vocabulary English sentences available offline: Jane Austen's novels from Debian's
``r-cran-janeaustenr`` (fetched with ``apt-get download`` and unpacked, no R needed).

``Sense and Sensibility`` is left out on purpose: the real LibriVox clips the smol recipe is
evaluated on are read from it, so no sentence of that book can reach training.

    python -m data_prep.text_sources --package-dir assets/janeaustenr   # prints counts and examples
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from data_prep.rdata import read_lazyload

EVAL_BOOK = "sensesensibility"  # the book of the LibriVox test clips
ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "esq": "esquire"}
_ABBREV = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_HEADING = re.compile(r"^(chapter|volume|vol\.|book|the end|finis)\b|^[IVXLC\d .]+$", re.IGNORECASE)
_NON_WORD = re.compile(r"[^a-z' ]+")


def austen_novels(package_dir: str | Path) -> dict[str, list[str]]:
    """Novel name -> its lines, from an unpacked ``r-cran-janeaustenr`` (``usr/lib/R/...`` or the package)."""
    package_dir = Path(package_dir)
    for index in [package_dir / "data" / "Rdata.rdx", *package_dir.glob("**/janeaustenr/data/Rdata.rdx")]:
        if index.exists():
            return read_lazyload(index.with_suffix(""))
    raise FileNotFoundError(f"no janeaustenr data/Rdata.rdx under {package_dir} (make smol-assets unpacks it)")


def normalize(sentence: str) -> str:
    """Spoken-form words: lowercase letters and apostrophes; abbreviations expanded."""
    text = _ABBREV.sub(lambda m: ABBREVIATIONS[m.group(1).lower()] + " ", sentence)
    text = text.replace("--", " ").replace("-", " ").lower()
    text = text.replace("\u2019", "'").replace("_", " ")
    text = _NON_WORD.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def sentences(lines: list[str], min_words: int = 4, max_words: int = 24) -> list[str]:
    """Normalized sentences (and clauses ending in ; or :) of a book, in order, without headings,
    numbers or other sentences that cannot be read aloud as written."""
    paragraphs, current = [], []
    for line in lines:
        line = (line or "").strip()
        if not line:
            if current:
                paragraphs.append(" ".join(current))
            current = []
        elif not _HEADING.match(line):
            current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    result = []
    for paragraph in paragraphs:
        for raw in _SENTENCE_END.split(_ABBREV.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], paragraph)):
            if re.search(r"\d|[\[\]{}<>&*=/]", raw):
                continue
            text = normalize(raw)
            if min_words <= len(text.split()) <= max_words:
                result.append(text)
    return result


def austen_sentences(package_dir: str | Path, exclude: set[str] | None = None) -> list[str]:
    """Unique sentences of every novel but the evaluation book, in a fixed order, minus ``exclude``."""
    novels = austen_novels(package_dir)
    exclude = exclude or set()
    seen: dict[str, None] = {}
    for name in sorted(novels):
        if name == EVAL_BOOK:
            continue
        for text in sentences(novels[name]):
            if text not in exclude:
                seen.setdefault(text)
    return list(seen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.text_sources", description=__doc__.split("\n")[0])
    parser.add_argument("--package-dir", default="assets/janeaustenr")
    args = parser.parse_args(argv)
    texts = austen_sentences(args.package_dir)
    words = [w for t in texts for w in t.split()]
    print(f"{len(texts)} sentences, {len(words)} words, {len(set(words))} distinct words (without {EVAL_BOOK})")
    for text in texts[:: max(1, len(texts) // 5)][:5]:
        print("  ", text)


if __name__ == "__main__":
    main()
