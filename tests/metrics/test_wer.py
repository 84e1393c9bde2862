"""Hand-computed cases for osum.metrics.wer and osum.metrics.exact."""

import pytest

from osum.metrics.exact import ExactMatch
from osum.metrics.wer import ErrorRate, edit_ops, normalize_text, tokenize


def test_normalize_text():
    assert normalize_text("Hello, World!  It's <HAPPY> 'quoted'") == "hello world it's quoted"
    assert normalize_text("Three five <happy>", remove_tags=False) == "three five <HAPPY>"
    assert normalize_text("five<SAD>six", remove_tags=False) == "five <SAD> six"
    assert normalize_text("你好，世界。") == "你好 世界"
    assert normalize_text("  ") == ""


def test_tokenize_units():
    assert tokenize("我爱 NLP 模型", "word") == ["我", "爱", "nlp", "模", "型"]
    assert tokenize("我爱 NLP", "char") == ["我", "爱", "n", "l", "p"]
    assert tokenize("ab <HAPPY>", "char", remove_tags=False) == ["a", "b", "<HAPPY>"]


def test_edit_ops_counts_and_alignment():
    ref = "a b c d".split()
    hyp = "a x c d e".split()
    assert edit_ops(ref, hyp) == (
        1,
        0,
        1,
        [("C", "a", "a"), ("S", "b", "x"), ("C", "c", "c"), ("C", "d", "d"), ("I", None, "e")],
    )
    subs, dels, ins, alignment = edit_ops("a b c".split(), ["a", "c"])
    assert (subs, dels, ins) == (0, 1, 0)
    assert alignment == [("C", "a", "a"), ("D", "b", None), ("C", "c", "c")]


def test_edit_ops_empty():
    assert edit_ops([], []) == (0, 0, 0, [])
    assert edit_ops(["a", "b"], []) == (0, 2, 0, [("D", "a", None), ("D", "b", None)])
    assert edit_ops([], ["a"]) == (0, 0, 1, [("I", None, "a")])


def test_error_rate_accumulates():
    er = ErrorRate()
    assert er.add("the cat sat on the mat", "the cat sit on mat", key="u1") == 2
    assert er.add("three five <HAPPY>", "Three, five.", key="u2") == 0
    assert er.add("", "uh", key="u3") == 1
    assert (er.sub, er.dels, er.ins, er.errors, er.ref_len) == (1, 1, 1, 3, 8)
    assert er.rate == pytest.approx(3 / 8)
    assert er.as_dict() == {"rate": 3 / 8, "n_ref": 8, "sub": 1, "del": 1, "ins": 1, "n_utts": 3}
    assert [u.key for u in er.worst(5)] == ["u1", "u3"]
    key, ref, hyp, errors = er.worst(1)[0]
    assert (key, ref, hyp, errors) == ("u1", "the cat sat on the mat", "the cat sit on mat", 2)


def test_error_rate_empty_reference_counts_insertions():
    er = ErrorRate()
    er.add("", "a b")
    assert (er.ref_len, er.errors, er.rate) == (0, 2, 2.0)
    assert ErrorRate().rate == 0.0


def test_char_error_rate_cjk():
    er = ErrorRate("char")
    er.add("今天天气很好", "今天天汽很好啊")
    assert (er.sub, er.dels, er.ins, er.ref_len) == (1, 0, 1, 6)
    assert er.rate == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        ErrorRate("phone")


def test_exact_match_normalization():
    em = ExactMatch()
    assert em.add("Forty-two.", "forty two")
    assert em.add("Yes!", "yes <HAPPY>")
    assert not em.add("yes", "no")
    assert (em.correct, em.n) == (2, 3)
    assert em.accuracy == pytest.approx(2 / 3)
    assert em.as_dict() == {"accuracy": 2 / 3, "n": 3, "correct": 2}
    tags = ExactMatch(remove_tags=False)
    assert not tags.add("<HAPPY>", "<SAD>")
    assert tags.add("<happy>", "<HAPPY>")
