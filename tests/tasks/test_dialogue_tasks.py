"""Dialogue tasks: their output types, the think section in each form (tag, language, none), the unknown-tag
masking inside a think, which samples a task serves, and a session's layout equal to training's."""

from __future__ import annotations

import random

import pytest
import torch

from osum.tasks.registry import DIALOGUE_TASKS, TaskRegistry
from osum.template import IGNORE, SPEECH, SequenceBuilder, Speech, TemplateConfig, Turn

SAMPLE = {"txt": "turn on the light", "labels": {"gender": "FEMALE", "age": "CHILD", "emotion": "SAD", "events": []},
          "answer": "young lady, please do not be sad. sure, i will turn on the light.",
          "reply_emotion": "COMFORTING", "think": "a sad little girl says: turn on the light. i should answer gently."}


def registry(think: str = "tag") -> TaskRegistry:
    return TaskRegistry.from_config(think=think)


def test_dialogue_tasks_name_their_output_types():
    reg = registry()
    assert {tag: reg.get(tag).output_type for tag in DIALOGUE_TASKS} == DIALOGUE_TASKS
    none = registry("none")
    assert none.get("<CHAT> <THINK>").output_type == "s2t_chat"
    assert none.get("<CHAT> <TEXT2TOKEN> <THINK>").output_type == "speech2text_token"
    assert none.think(none.get("<CHAT> <THINK>"), SAMPLE) is None
    with pytest.raises(ValueError, match="rendering.think"):
        TaskRegistry.from_config(think="verbose")


def test_tag_think_renders_and_parses_back():
    reg = registry()
    think = reg.think(reg.get("<CHAT> <THINK>"), SAMPLE)
    assert think == ("user's words: turn on the light, age: <CHILD>, gender: <FEMALE>, emotion: <SAD>, "
                     "sound event: <NONE>, reply emotion: <COMFORTING>")
    assert reg.parse_tag_think(think) == {"words": "turn on the light", "age": "CHILD", "gender": "FEMALE",
                                          "emotion": "SAD", "events": "NONE", "reply_emotion": "COMFORTING"}
    coughing = {**SAMPLE, "labels": {**SAMPLE["labels"], "events": ["COUGH"]}}
    assert "sound event: <COUGH>" in reg.think(reg.get("<CHAT> <THINK>"), coughing)
    assert reg.render(reg.get("<CHAT> <THINK>"), SAMPLE) == SAMPLE["answer"]  # the reply alone: think apart


def test_language_think_is_the_samples_own_and_required():
    reg = registry("language")
    task = reg.get("<CHAT> <THINK>")
    assert reg.think(task, SAMPLE) == SAMPLE["think"]
    without = {k: v for k, v in SAMPLE.items() if k != "think"}
    assert reg.missing_fields(task, without) == ["think"] and not reg.can_serve(task, without)
    assert registry("tag").missing_fields(registry("tag").get("<CHAT> <THINK>"), without) == []  # from the labels


def test_missing_label_is_the_unknown_tag_and_not_trained(tokenizer):
    reg = registry()
    no_age = {**SAMPLE, "labels": {k: v for k, v in SAMPLE["labels"].items() if k != "age"}}
    think = reg.think(reg.get("<CHAT> <THINK>"), no_age)
    assert "age: <&&>," in think
    builder = SequenceBuilder(tokenizer, TemplateConfig())
    seq = builder.build("s2t_chat_think", [Turn([Speech(2)], think=think, text="ok")])
    close = tokenizer.encode(">", add_special_tokens=False)[0]
    ampersand = tokenizer.encode("&&", add_special_tokens=False)
    assert not set(ampersand) & set(seq.input_ids)  # the label is gone from the input
    gaps = [k for k in range(1, len(seq.input_ids)) if seq.input_ids[k] == close and seq.text_targets[k - 1] == IGNORE]
    assert gaps, "the '>' of the unknown tag is input but never a target"


def test_later_turns_are_served_only_by_history_tasks():
    reg = registry()
    later = {**SAMPLE, "history": [{"audio": "flac_1", "text": "hello"}]}
    present = reg.present_fields(later)
    servers = {tag for tag in DIALOGUE_TASKS if reg.can_serve(reg.get(tag), later, present)}
    assert servers == {"<CHAT> <HISTORY>"}  # the S2S ones need speech_tokens
    first = {tag for tag in DIALOGUE_TASKS if reg.can_serve(reg.get(tag), SAMPLE)}
    assert first == {"<CHAT>", "<CHAT> <THINK>", "<CHAT> <HISTORY>"}
    with_codes = {**later, "speech_tokens": [1, 2]}
    assert reg.can_serve(reg.get("<CHAT> <TEXT2TOKEN> <HISTORY>"), with_codes)


class _Assistant:
    """What osum.chat needs of a SpeechAssistant: the builder and registry (no model)."""

    def __init__(self, tokenizer):
        self.builder, self.registry = SequenceBuilder(tokenizer, TemplateConfig()), registry()


def test_a_session_lays_out_history_as_training_does(tmp_path, tokenizer):
    """The processor's sequence of a multi-turn sample starts with the prompt the chat session builds."""
    import numpy as np

    from osum.chat import PastTurn, layout_turns, output_type
    from osum.data.mixture import TaskMixture
    from osum.data.processing import Filters, SampleProcessor
    from osum.data.reader import read_shard
    from osum.data.shards import ShardWriter
    from osum.data.skips import SkipCounter

    tone = lambda s: (0.3 * np.sin(np.arange(int(16000 * s)) * 0.05)).astype(np.float32)  # noqa: E731
    history = [{"text": "nice to meet you, anna.", "speech_tokens": [1, 2, 3]}, {"text": "sure.", "speech_tokens": [4]}]
    with ShardWriter(tmp_path, max_samples=10, audio_format="wav") as w:
        w.write("d0_2", tone(0.6), 16000, {**SAMPLE, "speech_tokens": [5, 6], "history": history},
                history_audio=[tone(0.3), tone(0.45)])
    assistant = _Assistant(tokenizer)
    assert output_type(assistant, False, has_history=False) == "s2t_chat_think"
    assert output_type(assistant, True, has_history=True) == "speech2text_token_history"
    reg = assistant.registry
    proc = SampleProcessor(assistant.builder, reg, TaskMixture(reg, {"<CHAT> <TEXT2TOKEN> <HISTORY>": 1}),
                           Filters(min_seconds=0.0))
    raw = next(read_shard(str(w.shards[0]), SkipCounter()))
    example = proc(raw, random.Random(0))
    n = [assistant.builder.speech_length(c.frames) for c in example.clips]
    past = [PastTurn(torch.zeros(k, 4), str(h["text"]), h["speech_tokens"]) for k, h in zip(n, history)]
    prompt = assistant.builder.prompt("speech2text_token_history", layout_turns(past, n[-1]))
    assert len(n) == 3 and example.input_ids[: len(prompt)] == prompt
    assert prompt.count(SPEECH) == sum(n) and example.text_targets[len(prompt) - 1] != IGNORE


def test_s2s_reread_lays_out_text_then_speech_chunks_each_after_reply_tokens_read_again(tokenizer):
    # with a think the reread starts after its closing marker, which must be one token: a tag of this tokenizer
    builder = SequenceBuilder(tokenizer, TemplateConfig(s2s_reread=(2, 3), think_end="<开始回答>"))
    think, reply, codes = "a calm man says: hi", "sir. hello", list(range(7))
    seq = builder.build("speech2text_token_think", [Turn([Speech(4)], think=think, text=reply, speech=codes)])
    think_ids, text_ids = builder.encode(think + builder.cfg.think_end), builder.encode(reply)
    rows = [-(r + 2) for r in [builder.vocab.boundary, *codes, builder.vocab.boundary]]  # S c1..c7 S: 9 rows
    chunks, t, s = [], 0, 0
    while t < len(text_ids) and s < len(rows):
        chunks += [("ctx", i) for i in text_ids[t : t + 2]] + [("speech", r) for r in rows[s : s + 3]]
        t, s = t + 2, s + 3
    chunks += [("speech", r) for r in rows[s:]]
    want = [("text", i) for i in [*think_ids, *text_ids, builder.eos_id]] + chunks
    start = len(builder.prompt("speech2text_token_think", [Turn([Speech(4)])]))
    assert seq.input_ids[start:] == [i for _, i in want][:-1]  # inputs: the reply shifted by one
    targets = [t if t != IGNORE else s for t, s in zip(seq.text_targets, seq.speech_targets)][start - 1 :]
    assert targets == [IGNORE if kind == "ctx" else (i if i >= 0 else -i - 2) for kind, i in want]  # reread: context
    plan = builder.plan("speech2text_token_think")
    assert plan["reread"] == (2, 3) and plan["think_end"] == think_ids[-1]
    assert "think_end" not in builder.plan("speech2text_token_history")  # no think: the whole text is the reply
    assert SequenceBuilder(tokenizer).output_type("speech2text_token_think").reread is None  # EChat's default
