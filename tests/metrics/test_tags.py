"""Hand-computed cases for osum.metrics.tags."""

import pytest

from osum.metrics.tags import TagAccuracy


def _gender() -> TagAccuracy:
    acc = TagAccuracy("gender", ["MALE", "FEMALE"])
    for ref, hyp in [
        ("MALE", "MALE"),
        ("MALE", "<MALE>"),
        ("MALE", "female"),
        ("FEMALE", "FEMALE"),
        ("FEMALE", None),
    ]:
        acc.add(ref, hyp)
    return acc


def test_counts_accuracy_and_chance():
    acc = _gender()
    assert acc.n == 5
    assert acc.correct == 3
    assert acc.accuracy == pytest.approx(0.6)
    assert acc.chance_level == pytest.approx(0.6)
    assert acc.confusion == {"MALE": {"MALE": 2, "FEMALE": 1}, "FEMALE": {"FEMALE": 1, "<NONE>": 1}}
    assert acc.recall() == pytest.approx({"MALE": 2 / 3, "FEMALE": 0.5})


def test_none_reference_skipped_and_aliases():
    acc = TagAccuracy("emotion")
    acc.add(None, "HAPPY")
    acc.add("ANGRY", "<ANGER>")
    acc.add("SAD", "")
    assert acc.n == 2
    assert acc.confusion == {"ANGER": {"ANGER": 1}, "SAD": {"<NONE>": 1}}
    assert acc.accuracy == 0.5


def test_empty():
    acc = TagAccuracy("age", ["CHILD", "ADULT", "OLD"])
    assert (acc.n, acc.accuracy, acc.chance_level) == (0, 0.0, 0.0)
    assert "CHILD" in acc.confusion_table()


def test_confusion_table_text():
    acc = _gender()
    acc.add("MALE", "CHILD")
    assert acc.confusion_table().splitlines() == [
        "gender: accuracy 50.00% (n=6), chance 66.67%",
        "ref \\ hyp  MALE  FEMALE  CHILD  <NONE>  recall",
        "MALE          2       1      1       0   50.0%",
        "FEMALE        0       1      0       1   50.0%",
    ]


def test_as_dict():
    d = _gender().as_dict()
    assert d["kind"] == "gender"
    assert d["n"] == 5
    assert d["accuracy"] == pytest.approx(0.6)
    assert d["chance_level"] == pytest.approx(0.6)
    assert d["confusion"]["FEMALE"]["<NONE>"] == 1
