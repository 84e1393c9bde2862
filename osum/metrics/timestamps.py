"""Average alignment shift (AAS) of word timestamps, for speech recognition with word timestamps (SRWT).

The OSUM papers report AAS in milliseconds, but the original repository ships no script for it; this is
our definition:

1. Reference and hypothesis are lists of ``(word, start_s, end_s)``. Words are compared in their
   :func:`osum.metrics.wer.normalize_text` form; words that normalise to nothing (tags, punctuation) are
   dropped.
2. The two word sequences are aligned with :func:`osum.metrics.wer.edit_ops`.
3. For every correctly matched pair (op ``C``) the shift is
   ``(|start_hyp - start_ref| + |end_hyp - end_ref|) / 2``, in ms. Substituted, deleted and inserted
   words carry no shift; they show up in the WER instead.
4. AAS = total shift / number of matched pairs, over the whole test set.
"""

from __future__ import annotations

from osum.metrics.wer import edit_ops, normalize_text

TimedWord = tuple[str, float, float]


def _normalized(words: list[TimedWord]) -> list[TimedWord]:
    """Words in scoring form, without those that normalise to an empty string."""
    out = []
    for word, start, end in words:
        norm = normalize_text(word)
        if norm:
            out.append((norm, start, end))
    return out


def alignment_shift(ref_words: list[TimedWord], hyp_words: list[TimedWord]) -> tuple[float, int]:
    """``(total_shift_ms, n_matched)`` of one utterance (see the module docstring)."""
    ref, hyp = _normalized(ref_words), _normalized(hyp_words)
    _, _, _, alignment = edit_ops([w for w, _, _ in ref], [w for w, _, _ in hyp])
    total_ms, n_matched = 0.0, 0
    i = j = 0
    for op, _, _ in alignment:
        if op == "C":
            (_, rs, re_), (_, hs, he) = ref[i], hyp[j]
            total_ms += 1000.0 * (abs(hs - rs) + abs(he - re_)) / 2
            n_matched += 1
        i += op != "I"
        j += op != "D"
    return total_ms, n_matched


class AlignmentShift:
    """Accumulates AAS over utterances; ``mean_ms`` is the test-set AAS."""

    def __init__(self) -> None:
        self.total_ms = 0.0
        self.n_matched = 0
        self.n_ref_words = 0
        self.n_utts = 0

    def add(self, ref_words: list[TimedWord], hyp_words: list[TimedWord]) -> None:
        """Score one utterance."""
        total_ms, n_matched = alignment_shift(ref_words, hyp_words)
        self.total_ms += total_ms
        self.n_matched += n_matched
        self.n_ref_words += len(_normalized(ref_words))
        self.n_utts += 1

    @property
    def mean_ms(self) -> float:
        """Mean shift per matched word in ms (0 when no word matched)."""
        return self.total_ms / self.n_matched if self.n_matched else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Summary numbers, JSON-ready."""
        return {
            "mean_ms": self.mean_ms,
            "n_matched": self.n_matched,
            "n_ref_words": self.n_ref_words,
            "n_utts": self.n_utts,
        }
