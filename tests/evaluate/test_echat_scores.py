"""osum.evaluate.echat scoring from the test data alone: replies read by phrase, appropriateness, memory, and whether
the reply follows the model's own think (right or wrong)."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep import dialogue_rules as rules
from osum.evaluate.echat import (
    DialogueCase,
    Generated,
    Phrasebook,
    breakdown_table,
    by_speaker,
    memory_by_kind,
    reply_emotion_chain,
    reply_follows_think,
    reply_scores,
    score_run,
)


def case(key: str, age: str, gender: str, emotion: str, event: str | None, content: str, memory: str | None = None):
    cues = rules.Cues(age, gender, emotion, event)
    expect = {"parts": rules.reply_parts(cues, content), "think": rules.think_parts(cues)}
    if memory:
        expect["memory"] = memory
    labels = {"age": age, "gender": gender, "emotion": emotion, "events": [event] if event else []}
    meta = {"labels": labels, "expect": expect, "reply_emotion": rules.EMOTION_REPLY[emotion][0]}
    return DialogueCase(key, np.zeros(160, np.float32), meta)


CASES = [case("a", "CHILD", "FEMALE", "SAD", None, "sure, i will open the door"),
         case("b", "OLD", "MALE", "HAPPY", "COUGH", "the answer is five"),
         case("c", "ADULT", "FEMALE", "NEUTRAL", "BELL", "your name is anna", memory="anna")]
BOOK = Phrasebook(CASES)


def test_reply_parts_appropriateness_content_and_memory():
    right = "young lady, please do not be sad. sure, i will open the door."
    assert reply_scores(right, CASES[0], BOOK) == {"address": True, "emotion": True, "event": True,
                                                   "appropriate": True, "content": True}
    wrong_event = "young lady, please do not be sad. bless you. sure, i will open the door."
    scores = reply_scores(wrong_event, CASES[0], BOOK)
    assert not scores["event"] and not scores["appropriate"] and scores["address"] and scores["content"]
    memory = reply_scores("madam. the bell rang. your name is peter.", CASES[2], BOOK)
    assert memory["appropriate"] and not memory["content"] and memory["memory"] is False


def test_a_reply_follows_its_think_even_when_both_are_wrong():
    think = {"age": "OLD", "gender": "MALE", "emotion": "HAPPY", "event": "COUGH"}  # wrong for case a
    follows = "grandpa, glad you are happy. bless you. sure, i will open the door."
    assert reply_follows_think(think, follows, BOOK) == {"address": True, "emotion": True, "event": True, "all": True}
    assert not reply_scores(follows, CASES[0], BOOK)["appropriate"]
    heard_again = "young lady, glad you are happy. bless you. sure, i will open the door."  # address from the voice
    got = reply_follows_think(think, heard_again, BOOK)
    assert not got["address"] and got["emotion"] and got["event"] and not got["all"]
    calm = {"age": "ADULT", "gender": "FEMALE", "emotion": "NEUTRAL", "event": "NONE"}
    assert reply_follows_think(calm, "madam. sure, i will open the door.", BOOK)["all"]  # empty phrases follow too


def test_the_reply_emotion_chain_names_the_broken_link():
    # case a: a SAD child; the think heard SAD but wrote the reply emotion of a happy user, which the reply then says
    think = {"emotion": "SAD", "reply_emotion": "CHEERFUL"}
    chain = reply_emotion_chain(think, "young lady, glad you are happy. sure, i will open the door.", CASES[0], BOOK)
    assert chain == {"right": False, "follows_emotion": False, "read_by_reply": True}
    good = {"emotion": "SAD", "reply_emotion": "COMFORTING"}
    assert reply_emotion_chain(good, "young lady, please do not be sad.", CASES[0], BOOK) == {
        "right": True, "follows_emotion": True, "read_by_reply": True}
    calm = {"emotion": "NEUTRAL", "reply_emotion": "NEUTRAL"}  # NEUTRAL's phrase is the empty one
    assert reply_emotion_chain(calm, "madam. the bell rang.", CASES[2], BOOK)["read_by_reply"]
    assert not reply_emotion_chain(calm, "madam, glad you are happy.", CASES[2], BOOK)["read_by_reply"]


def tag_think(words: str, age: str, gender: str, emotion: str, event: str, reply_emotion: str) -> str:
    return (f"user's words: {words}, age: <{age}>, gender: <{gender}>, emotion: <{emotion}>, "
            f"sound event: <{event}>, reply emotion: <{reply_emotion}>")


def test_appropriateness_splits_into_hearing_and_following():
    a, b = CASES[0], CASES[1]  # a: a sad girl, no event; b: a happy old man who coughs
    heard_a = tag_think("open the door", "CHILD", "FEMALE", "SAD", "NONE", "COMFORTING")
    misheard_b = tag_think("what is two plus three", "ADULT", "MALE", "HAPPY", "COUGH", "CHEERFUL")  # age wrong
    generated = [
        Generated(a, False, "s2t_chat_think", heard_a, "young lady, please do not be sad. sure, i will open the door.", []),
        Generated(a, False, "s2t_chat_think", heard_a, "young lady, glad you are happy. sure, i will open the door.", []),
        Generated(b, False, "s2t_chat_think", misheard_b, "sir, glad you are happy. bless you. the answer is five.", []),
    ]
    summary = score_run(generated, "tag", BOOK)[0]
    assert summary["think"]["all_cues"] == pytest.approx(66.67)
    assert summary["appropriate_after_think"] == {"right": 50.0, "wrong": 0.0}
    assert summary["reply"]["appropriate"] == pytest.approx(33.33)
    no_think = score_run([Generated(a, False, "s2t_chat", None, "young lady.", [])], "none", BOOK)[0]
    assert "appropriate_after_think" not in no_think and "think" not in no_think


def test_a_probe_swaps_with_another_case_never_the_same():
    from osum.evaluate.context_probes import other

    assert [other(CASES, i, 7).key for i in range(3)] == ["b", "c", "a"]  # 7 % 3 = 1 place further
    assert [other(CASES, i, 3).key for i in range(3)] == ["b", "c", "a"]  # a full turn would be itself: the next
    with pytest.raises(ValueError, match="two cases"):
        other(CASES[:1], 0, 1)


def test_breakdowns_by_voice_and_by_kind_of_remembered_value():
    voiced = [DialogueCase(c.key, c.audio, {**c.meta, "speaker": v}) for c, v in zip(CASES, ["ked", "f2", "ked"])]
    voiced[2].meta["expect"] = {**voiced[2].expect, "memory_kind": "name"}
    right = ["young lady, please do not be sad. sure, i will open the door.",
             "sir, glad you are happy. bless you. the answer is five.",  # address wrong: an old man
             "madam. the bell rang. your name is anna."]
    generated = [Generated(c, False, "s2t_chat", None, text, []) for c, text in zip(voiced, right)]
    groups = by_speaker(generated)
    assert {k: [g.case.key for g in v] for k, v in groups.items()} == {"f2": ["b"], "ked": ["a", "c"]}
    per_voice = {k: score_run(v, "none", BOOK)[0]["reply"]["appropriate"] for k, v in groups.items()}
    assert per_voice == {"f2": 0.0, "ked": 100.0}
    assert memory_by_kind(generated) == {"name": {"memory": 100.0, "n": 1}}
    wrong_name = [*generated[:2], Generated(voiced[2], True, "s2t_chat", None, "madam. your name is peter.", [])]
    assert memory_by_kind(wrong_name) == {"name": {"memory": 0.0, "n": 1}}
    report = {"by_speaker": {k: score_run(v, "none", BOOK)[0] for k, v in groups.items()},
              "memory_by_kind": memory_by_kind(wrong_name)}
    text = breakdown_table({"m": report})
    assert "| m | f2 | 1 | - | - | - | - | - | 0.0% | 100.0% | 100.0% | 0.0% |" in text
    assert "| m | 0.0% of 1 |" in text
