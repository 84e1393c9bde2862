"""Hand-computed cases for osum.metrics.timestamps (average alignment shift)."""

import pytest

from osum.metrics.timestamps import AlignmentShift, alignment_shift

REF = [("the", 0.0, 0.2), ("cat", 0.3, 0.6), ("sat", 0.7, 1.0)]


def test_uniform_shift():
    hyp = [(w, s + 0.1, e + 0.1) for w, s, e in REF]
    total, n = alignment_shift(REF, hyp)
    assert n == 3
    assert total == pytest.approx(300.0)


def test_start_and_end_shift_are_averaged():
    total, n = alignment_shift([("a", 1.0, 2.0)], [("A,", 1.1, 1.7)])
    assert n == 1
    assert total == pytest.approx((100 + 300) / 2)


def test_missing_and_wrong_words_carry_no_shift():
    hyp = [("the", 0.0, 0.2), ("sat", 0.9, 1.2)]
    assert alignment_shift(REF, hyp) == pytest.approx((200.0, 2))
    hyp = [("the", 0.05, 0.25), ("dog", 0.3, 0.6), ("sat", 0.7, 1.0), ("down", 1.0, 1.3)]
    assert alignment_shift(REF, hyp) == pytest.approx((50.0, 2))


def test_tags_and_punctuation_words_dropped():
    hyp = [("<HAPPY>", 0.0, 0.0), ("The", 0.0, 0.2), ("cat", 0.3, 0.6), (",", 0.6, 0.6), ("sat", 0.7, 1.0)]
    assert alignment_shift(REF, hyp) == (0.0, 3)


def test_accumulator():
    aas = AlignmentShift()
    assert aas.mean_ms == 0.0
    aas.add(REF, [(w, s + 0.1, e + 0.1) for w, s, e in REF])
    aas.add(REF, [("the", 0.0, 0.2)])
    assert (aas.n_matched, aas.n_ref_words, aas.n_utts) == (4, 6, 2)
    assert aas.mean_ms == pytest.approx(75.0)
    assert aas.as_dict() == pytest.approx({"mean_ms": 75.0, "n_matched": 4, "n_ref_words": 6, "n_utts": 2})
