"""The mini dialogue corpus: replies that depend on the words and the voice cues, both think forms, multi-turn
members, held-out voices for the test split; built for real on a few dialogues."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_prep import dialogue_rules as rules
from data_prep import mini_corpus as mc
from data_prep.dialogue_corpus import REPLY_MEMBER, build, voices_of_splits
from data_prep.mini_corpus import HELDOUT_VOICES
from data_prep.voices import median_f0, synthesize_words
from osum.data.reader import read_shard
from osum.data.skips import SkipCounter
from osum.tasks.registry import TaskRegistry


def test_the_reply_depends_on_the_cues_and_the_words():
    words = rules.command_content("turn on the light")
    sad_child = rules.reply_text(rules.reply_parts(rules.Cues("CHILD", "FEMALE", "SAD"), words))
    calm_adult = rules.reply_text(rules.reply_parts(rules.Cues("ADULT", "FEMALE", "NEUTRAL"), words))
    assert sad_child == "young lady, please do not be sad. sure, i will turn on the light."
    assert calm_adult == "madam. sure, i will turn on the light."
    coughing = rules.reply_text(rules.reply_parts(rules.Cues("OLD", "MALE", "ANGER", "COUGH"), words))
    assert coughing == "grandpa, sorry you are upset. bless you. sure, i will turn on the light."
    replies = {rules.reply_text(rules.reply_parts(rules.Cues(a, g, e, ev), words))
               for (a, g) in rules.ADDRESS for e in rules.EMOTION_REPLY for ev in rules.EVENT_PHRASE}
    assert len(replies) == len(rules.ADDRESS) * len(rules.EMOTION_REPLY) * len(rules.EVENT_PHRASE)
    think = rules.language_think(rules.Cues("CHILD", "MALE", "HAPPY", "LAUGH"), "what is my name")
    assert think == "a happy little boy who is laughing says: what is my name. i should answer cheerfully."
    kind = rules.MEMORY_KINDS["complaint"]
    assert rules.fill(kind.answer, "i lost my keys") == "you said you lost your keys"


def test_more_voices_are_new_training_voices_that_sound_their_gender():
    base, more = voices_of_splits(), voices_of_splits(more_voices=True)
    assert more["test"] == base["test"] == list(HELDOUT_VOICES)
    extra = [mc.VOICE_BY_ID[v] for v in more["train"] if v not in base["train"]]
    assert len(extra) == 12 and more["valid"] == more["train"]
    assert not {v.name for v in extra} & {v.name for v in mc.VOICES}
    assert not any(v.name.endswith("+f2") for v in extra)  # the held-out espeak voice's variant stays unheard
    for voice in extra:  # an unknown espeak name falls back to the default male voice: caught by its pitch
        words = synthesize_words(voice, ["one", "two", "three", "four", "five"])
        f0 = median_f0(np.concatenate(list(words.values())))
        assert (f0 < 140) if voice.gender == "MALE" else (f0 > 160), (voice.id, f0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dialogue")
    build(out, seed=3, counts={"train": (3, 2), "valid": (1, 1), "test": (2, 2)}, workers=1)
    return out


def _samples(split_dir: Path):
    return [s for shard in sorted(split_dir.glob("shard-*.tar")) for s in read_shard(str(shard), SkipCounter())]


def test_train_keeps_every_turn_of_a_dialogue_with_its_history(corpus):
    samples = _samples(corpus / "train")
    multi = [s for s in samples if s.meta["dialogue"]["turns"] > 1]
    assert len(samples) == 3 + len(multi) and len(multi) >= 4  # two dialogues of 2-5 turns, a sample per turn
    for s in samples:
        d = s.meta["dialogue"]
        history = s.meta.get("history") or []
        assert len(history) == d["turn"] - 1
        assert REPLY_MEMBER in s.members and s.audio is not None
        for i, h in enumerate(history, 1):
            assert h["audio"] == f"flac_{i}" and f"flac_{i}" in s.members
            assert h["reply_audio"] == f"{REPLY_MEMBER}_{i}" and h["reply_audio"] in s.members
            assert h["text"] and h["user_text"]
        parts = s.meta["expect"]["parts"]
        assert s.meta["answer"] == rules.reply_text(parts)
        labels = s.meta["labels"]
        cues = rules.Cues(labels["age"], labels["gender"], labels["emotion"], (labels["events"] or [None])[0])
        assert parts == rules.reply_parts(cues, parts["content"]) and s.meta["reply_emotion"] == cues.reply_emotion
        assert s.meta["think"] == rules.language_think(cues, s.meta["txt"])
        assert s.meta["expect"]["think"] == rules.think_parts(cues)
    queries = [s for s in multi if s.meta["domain"] == "memory_query"]
    assert len(queries) == 2 and all(s.meta["expect"]["memory"] in s.meta["answer"] for s in queries)
    first = {s.meta["dialogue"]["id"]: s for s in multi if s.meta["dialogue"]["turn"] == 1}
    for q in queries:  # the value was said in turn 1 of the same dialogue, by the same voice
        said = first[q.meta["dialogue"]["id"]]
        assert q.meta["expect"]["memory_said"] in said.meta["txt"] and said.meta["speaker"] == q.meta["speaker"]


def test_single_and_multi_turn_dialogues_are_written_mixed(corpus):
    ids = list(dict.fromkeys(s.meta["dialogue"]["id"] for s in _samples(corpus / "train")))
    assert len(ids) == 5 and ids != sorted(ids)  # not plan order (singles first): shards mix both kinds


def test_test_split_has_held_out_voices_and_final_turns_only(corpus):
    samples = _samples(corpus / "test")
    assert len(samples) == 4
    assert {s.meta["speaker"] for s in samples} <= set(HELDOUT_VOICES)
    assert all(s.meta["dialogue"]["turn"] == s.meta["dialogue"]["turns"] for s in samples)
    train_voices = {s.meta["speaker"] for s in _samples(corpus / "train")}
    assert not train_voices & set(HELDOUT_VOICES)
    sessions = sorted((corpus / "sessions").glob("*/session.json"))  # multi-turn test dialogues as files
    assert len(sessions) == 2
    session = json.loads(sessions[0].read_text())
    final = next(s for s in samples if s.meta["dialogue"]["id"] == session["id"])
    assert [t["expected_reply"] for t in session["turns"]] == [h["text"] for h in final.meta["history"]] + [
        final.meta["answer"]]
    assert all((sessions[0].parent / t["audio"]).stat().st_size > 1000 for t in session["turns"])


def test_both_think_forms_come_from_one_sample(corpus):
    sample = _samples(corpus / "train")[0].meta
    tag = TaskRegistry.from_config(think="tag")
    parsed = tag.parse_tag_think(tag.think(tag.get("<CHAT> <THINK>"), sample))
    assert parsed["words"] == sample["txt"] and parsed["gender"] == sample["labels"]["gender"]
    assert parsed["reply_emotion"] == sample["reply_emotion"]
    language = TaskRegistry.from_config(think="language")
    assert language.think(language.get("<CHAT> <THINK>"), sample) == sample["think"]
