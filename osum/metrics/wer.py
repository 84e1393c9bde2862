"""Word and character error rates (WER / CER), in the spirit of the original ``tools/compute-wer.py``.

Text is normalised before scoring (:func:`normalize_text`): NFKC, lower case, ``<...>`` tags removed (the
original's ``remove_tag=True``, so ASR+X outputs such as ``"three five <HAPPY>"`` score as plain ASR),
punctuation removed except apostrophes inside words, whitespace collapsed. Tokens (:func:`tokenize`):

* ``unit="word"``: whitespace-separated words, except that every CJK ideograph or kana is a token of its
  own. This is the original's ``--char=1`` mode that ``do_docode.sh`` uses (mixed error rate: Chinese
  characters, Latin words).
* ``unit="char"``: every non-space character is a token (the original's ``compute-cer.py``).

Numbers are not rewritten (no ``cn2an``); score references and hypotheses in the same numeral style.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, NamedTuple

from osum.tasks.labels import tag

Unit = Literal["word", "char"]
Alignment = list[tuple[str, str | None, str | None]]

_TAG_SPLIT_RE = re.compile(r"(<[^<>]+>)")
_TAG_TOKEN_RE = re.compile(r"<[^<>]+>")
_APOSTROPHES = "'\u2019"
_CJK_RANGES = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)


def is_cjk(char: str) -> bool:
    """Whether ``char`` is a CJK ideograph or Japanese kana (scored one character per token)."""
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def _normalize_plain(text: str) -> str:
    """Lower-case a tag-free string and turn punctuation (but not in-word apostrophes) into spaces."""
    text = text.lower()
    out = []
    for i, char in enumerate(text):
        if not unicodedata.category(char).startswith("P"):
            out.append(char)
        elif (
            char in _APOSTROPHES and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
        ):
            out.append("'")
        else:
            out.append(" ")
    return "".join(out)


def normalize_text(text: str, remove_tags: bool = True) -> str:
    """Scoring form of ``text``: lower case, tags dropped (or kept as ``<TAG>`` tokens), no punctuation."""
    pieces = []
    for piece in _TAG_SPLIT_RE.split(unicodedata.normalize("NFKC", text)):
        if _TAG_TOKEN_RE.fullmatch(piece):
            if not remove_tags:
                pieces.append(f" {tag(piece[1:-1])} ")
        else:
            pieces.append(_normalize_plain(piece))
    return " ".join("".join(pieces).split())


def tokenize(text: str, unit: Unit = "word", remove_tags: bool = True) -> list[str]:
    """Normalise ``text`` and split it into scoring tokens (see the module docstring); tags stay whole."""
    tokens: list[str] = []
    for word in normalize_text(text, remove_tags).split():
        if _TAG_TOKEN_RE.fullmatch(word):
            tokens.append(word)
        elif unit == "char":
            tokens.extend(word)
        else:
            run = ""
            for char in word:
                if is_cjk(char):
                    if run:
                        tokens.append(run)
                        run = ""
                    tokens.append(char)
                else:
                    run += char
            if run:
                tokens.append(run)
    return tokens


def edit_ops(ref: list[str], hyp: list[str]) -> tuple[int, int, int, Alignment]:
    """Levenshtein alignment of two token lists (unit costs).

    Returns ``(substitutions, deletions, insertions, alignment)``; the alignment lists
    ``(op, ref_tok, hyp_tok)`` with ``op`` in ``C`` (correct), ``S``, ``D`` (``hyp_tok`` None) and ``I``
    (``ref_tok`` None). Ties prefer a match or substitution, then a deletion.
    """
    n, m = len(ref), len(hyp)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev = dist[i], dist[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (ref[i - 1] != hyp[j - 1])
            row[j] = min(diag, prev[j] + 1, row[j - 1] + 1)

    alignment: Alignment = []
    subs = dels = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            same = ref[i - 1] == hyp[j - 1]
            alignment.append(("C" if same else "S", ref[i - 1], hyp[j - 1]))
            subs += not same
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            alignment.append(("D", ref[i - 1], None))
            dels += 1
            i -= 1
        else:
            alignment.append(("I", None, hyp[j - 1]))
            ins += 1
            j -= 1
    alignment.reverse()
    return subs, dels, ins, alignment


class UttErrors(NamedTuple):
    """One scored utterance, as :meth:`ErrorRate.worst` lists it."""

    key: str
    ref: str
    hyp: str
    errors: int


class ErrorRate:
    """Accumulates substitutions, deletions and insertions over utterances; ``rate`` is WER or CER."""

    def __init__(self, unit: Unit = "word") -> None:
        if unit not in ("word", "char"):
            raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
        self.unit: Unit = unit
        self.sub = self.dels = self.ins = 0
        self.ref_len = 0
        self.utts: list[UttErrors] = []

    def add(self, ref: str, hyp: str, key: str | None = None) -> int:
        """Score one utterance (``key`` defaults to its index) and return its error count."""
        ref_toks, hyp_toks = tokenize(ref, self.unit), tokenize(hyp, self.unit)
        subs, dels, ins, _ = edit_ops(ref_toks, hyp_toks)
        self.sub += subs
        self.dels += dels
        self.ins += ins
        self.ref_len += len(ref_toks)
        errors = subs + dels + ins
        self.utts.append(UttErrors(str(len(self.utts)) if key is None else key, ref, hyp, errors))
        return errors

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.sub + self.dels + self.ins

    @property
    def rate(self) -> float:
        """``errors / max(ref_len, 1)``: insertions against an empty reference still count."""
        return self.errors / max(self.ref_len, 1)

    def as_dict(self) -> dict[str, float | int]:
        """Summary numbers, JSON-ready."""
        return {
            "rate": self.rate,
            "n_ref": self.ref_len,
            "sub": self.sub,
            "del": self.dels,
            "ins": self.ins,
            "n_utts": len(self.utts),
        }

    def worst(self, k: int = 10) -> list[UttErrors]:
        """Up to ``k`` utterances with errors, most first (ties keep the order they were added)."""
        return sorted((u for u in self.utts if u.errors), key=lambda u: -u.errors)[:k]
