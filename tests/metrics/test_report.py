"""osum.metrics.report: creation on first use, groups, JSON round trip, text table."""

import json

import pytest

from osum.metrics.exact import ExactMatch
from osum.metrics.report import Report
from osum.metrics.tags import TagAccuracy
from osum.metrics.timestamps import AlignmentShift
from osum.metrics.wer import ErrorRate

TASK = "<TRANSCRIBE> <GENDER>"


def _report() -> Report:
    report = Report()
    report.metric(TASK, "wer", ErrorRate).add("three five <MALE>", "three four <MALE>", key="u1")
    report.metric(TASK, "wer", ErrorRate, group="digits").add("three five", "three four")
    gender = report.metric(TASK, "gender", TagAccuracy, kind="gender", labels=["MALE", "FEMALE"])
    gender.add("MALE", "MALE")
    gender.add("MALE", "MALE")
    gender.add("FEMALE", None)
    gender.add("FEMALE", "FEMALE")
    report.metric("<TRANSCRIBE>", "cer", ErrorRate, unit="char").add("你好", "你好")
    report.metric("<SRWT>", "aas", AlignmentShift).add([("a", 0.0, 0.5)], [("a", 0.1, 0.6)])
    report.metric("<SQA>", "exact", ExactMatch).add("Yes.", "yes")
    return report


def test_metric_created_once():
    report = _report()
    wer = report.metric(TASK, "wer", ErrorRate)
    assert wer is report.tasks[TASK].metrics["wer"]
    assert len(wer.utts) == 1
    assert list(report.tasks[TASK].metrics) == ["wer", "wer/digits", "gender"]
    with pytest.raises(TypeError):
        report.metric(TASK, "wer", TagAccuracy, kind="gender")


def test_to_dict_values():
    d = _report().to_dict()
    assert d["tasks"][TASK]["wer"]["type"] == "ErrorRate"
    assert d["tasks"][TASK]["wer"]["rate"] == pytest.approx(0.5)
    assert d["tasks"][TASK]["wer/digits"]["sub"] == 1
    assert d["tasks"][TASK]["gender"]["accuracy"] == pytest.approx(0.75)
    assert d["tasks"]["<SRWT>"]["aas"]["mean_ms"] == pytest.approx(100.0)
    assert d["tasks"]["<SQA>"]["exact"]["accuracy"] == 1.0


def test_write_json_round_trip_and_table(tmp_path):
    report = _report()
    json_path, txt_path = report.write(tmp_path / "eval")
    assert json.loads(json_path.read_text(encoding="utf-8")) == report.to_dict()
    text = txt_path.read_text(encoding="utf-8")
    assert text == report.format_table()
    for task in [TASK, "<TRANSCRIBE>", "<SRWT>", "<SQA>"]:
        assert task in text
    lines = text.splitlines()
    assert lines[0].split() == ["task", "metric", "value", "n", "chance", "above", "chance", "detail"]
    gender_row = next(line for line in lines if " gender " in line)
    assert gender_row.split()[3:7] == ["75.00%", "4", "50.00%", "yes"]
    assert "100.0 ms" in text
    assert f"[{TASK}] gender" in text
    assert "ref \\ hyp  MALE  FEMALE  <NONE>  recall" in text


def test_below_chance_marked():
    report = Report()
    acc = report.metric("<EMOTION>", "emotion", TagAccuracy, kind="emotion")
    for ref, hyp in [("SAD", "HAPPY"), ("SAD", "SAD"), ("HAPPY", "SAD")]:
        acc.add(ref, hyp)
    row = next(line for line in report.format_table().splitlines() if line.startswith("<EMOTION>"))
    assert row.split()[2:6] == ["33.33%", "3", "66.67%", "no"]
