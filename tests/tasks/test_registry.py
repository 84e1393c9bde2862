"""Target rendering and hypothesis parsing round-trip for every task; bad task names are refused."""

import random

import pytest

from osum.tasks import TaskRegistry, UnknownTaskError, normalize_tag_string

SAMPLE = {"txt": "Three  Seven one", "words": [["three", 0.21, 0.55], ["seven", 0.6, 0.94], ["one", 1.0, 1.32]],
          "labels": {"gender": "female", "age": "YOUTH", "emotion": "ANGRY", "style": "CHAT", "events": ["BELL"]},
          "answer": "Five"}


@pytest.fixture(scope="module")
def registry():
    return TaskRegistry.from_config()


def test_render_examples(registry):
    r = lambda tag: registry.render(registry.get(tag), SAMPLE)  # noqa: E731
    assert r("<TRANSCRIBE>") == "three seven one"
    assert r("<TRANSCRIBE> <ALIGN>") == "three<0.2,0.6> seven<0.6,0.9> one<1.0,1.3>"
    assert r("<TRANSCRIBE> <EMOTION>") == "three seven one<ANGER>"  # alias ANGRY -> ANGER
    assert r("<TRANSCRIBE> <AGE> <GENDER>") == "three seven one<ADULT><FEMALE>"  # YOUTH -> ADULT
    assert r("<STYLE> <AGE> <GENDER>") == "<CHAT><ADULT><FEMALE>"
    assert r("<TRANSCRIBE> <S2TCHAT>") == "three seven one<开始回答>five"
    assert r("<S2TCHAT>") == "five"
    assert r("<CAPTION>") == "<BELL>"


def test_round_trip_every_task(registry):
    for task in registry.tasks.values():
        target = registry.render(task, SAMPLE)
        fields = registry.parse(task, target)
        if task.has_transcript:
            assert fields["transcript"] == "three seven one", task.tag
        for f in task.label_fields:
            assert fields[f] == registry.labels_of(SAMPLE, f)[0], (task.tag, f)
        if "answer" in task.fields:
            assert fields["answer"] == "five"
        if "words" in task.fields:
            assert [w for w, _, _ in fields["words"]] == ["three", "seven", "one"]
            assert fields["words"][1][1:] == (0.6, 0.9)


def test_parse_tolerates_order_and_missing_tags(registry):
    task = registry.get("<TRANSCRIBE> <AGE> <GENDER>")
    assert registry.parse(task, "one two<FEMALE><CHILD>") == {"transcript": "one two", "age": "CHILD", "gender": "FEMALE"}
    assert registry.parse(task, "one two<FEMALE>") == {"transcript": "one two", "age": None, "gender": "FEMALE"}
    assert registry.parse(task, "") == {"transcript": "", "age": None, "gender": None}


def test_missing_fields_and_unknown_labels(registry):
    task = registry.get("<TRANSCRIBE> <CAPTION>")
    assert registry.missing_fields(task, {"txt": "a b", "labels": {"events": []}}) == ["labels.events"]
    assert registry.missing_fields(registry.get("<TRANSCRIBE>"), {"txt": "  "}) == ["txt"]
    assert registry.unknown_labels({"labels": {"gender": "ROBOT"}}) == ["gender=ROBOT"]


def test_tag_strings_and_unknown_tasks(registry):
    assert normalize_tag_string("<transcribe><GENDER>") == "<TRANSCRIBE> <GENDER>"
    assert registry.get("<TRANSCRIBE><GENDER>").name == "SGC"
    with pytest.raises(UnknownTaskError, match="unknown task '<DANCE>'"):
        registry.get("<DANCE>")
    with pytest.raises(UnknownTaskError, match="malformed"):
        registry.get("TRANSCRIBE")


def test_prompts_drawn_from_pool(registry):
    task = registry.get("<TRANSCRIBE>")
    seen = {registry.prompt(task, random.Random(i)) for i in range(50)}
    assert seen == set(registry.prompts[task.tag])


def test_scoring_is_named_by_the_registry(registry):
    """Decode's default tasks and every task's metrics come from the registry entries, in a known kind."""
    from osum.metrics.report import METRIC_OF_KIND

    assert registry.decode_tasks() == ["<TRANSCRIBE>", "<TRANSCRIBE> <ALIGN>", "<TRANSCRIBE> <CAPTION>",
                                       "<TRANSCRIBE> <EMOTION>", "<TRANSCRIBE> <STYLE>", "<TRANSCRIBE> <GENDER>",
                                       "<TRANSCRIBE> <AGE>", "<TRANSCRIBE> <S2TCHAT>", "<CAPTION>", "<EMOTION>",
                                       "<STYLE>", "<GENDER>", "<AGE>"]
    assert [(m.name, m.kind, m.field) for m in registry.get("<TRANSCRIBE> <ALIGN>").metrics] == [
        ("wer", "wer", "transcript"), ("aas", "alignment_shift", "words")]
    assert [m.name for m in registry.get("<TRANSCRIBE> <S2TCHAT>").metrics] == ["wer", "answer_exact"]
    assert [(m.name, m.kind) for m in registry.get("<AGE> <GENDER>").metrics] == [
        ("age", "tag_accuracy"), ("gender", "tag_accuracy")]
    assert all(m.kind in METRIC_OF_KIND for t in registry.tasks.values() for m in t.metrics)
