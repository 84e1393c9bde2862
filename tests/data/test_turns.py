"""Samples without audio (T2T, TTS) and with several clips (multi-turn dialogue), from real shards to batches."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from osum.data.batching import BatchLimits
from osum.data.filters import Filters
from osum.data.mixture import TaskMixture
from osum.data.processing import SampleProcessor
from osum.data.reader import read_shard
from osum.data.shardlist import resolve_shards
from osum.data.shards import ShardWriter
from osum.data.skips import SkipCounter
from osum.data.stream import ShardStream
from osum.tasks import Task, TaskRegistry
from osum.template import IGNORE, SPEECH, SequenceBuilder

LABELS = {"gender": "MALE", "age": "ADULT", "emotion": "NEUTRAL", "style": "NEWS", "events": []}
S = 4096  # the speech boundary code that opens and closes a target speech span


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stream_all(shards, processor, **limits) -> tuple[list[dict], dict[str, int]]:
    stream = ShardStream(shards, processor, BatchLimits(**{"max_samples": 8, "buffer_size": 8, **limits}), pad_id=0,
                         infinite=False)
    batches, skips = list(stream), SkipCounter()
    for b in batches:
        skips.merge(b["skips"])
    return batches, dict(skips.counts)


@pytest.fixture(scope="module")
def text_only_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("text_only")
    with ShardWriter(out, max_samples=100) as w:
        for i in range(3):
            w.write_text_only(f"t2t{i}", {"question": "what is two plus three", "answer": "five"})
            w.write_text_only(f"tts{i}", {"txt": "one two three", "speech_tokens": [7, 8 + i, 4095]})
        w.write_text_only("tts_out_of_range", {"txt": "one two", "speech_tokens": [1, 4096]})
        w.write_text_only("tts_not_ints", {"txt": "one two", "speech_tokens": ["a", 2]})
        w.write_text_only("no_answer", {"question": "what is two plus three"})  # T2T lacks `answer`, TTS `txt`
    return resolve_shards(str(out))


def text_processor(tokenizer, filters=None):
    registry = TaskRegistry.from_config()
    mixture = TaskMixture(registry, {"<TEXT2TEXT>": 1.0, "<TEXT2TOKEN>": 1.0})
    return SampleProcessor(SequenceBuilder(tokenizer), registry, mixture, filters or Filters())


def test_text_only_samples_flow_into_batches_without_audio(text_only_shards, tokenizer):
    batches, skips = stream_all(text_only_shards, text_processor(tokenizer))
    assert sorted(k for b in batches for k in b["keys"]) == sorted([f"t2t{i}" for i in range(3)]
                                                                  + [f"tts{i}" for i in range(3)])
    assert skips == {"bad_speech_tokens": 2, "no_servable_task": 1}
    for b in batches:
        assert b["mel"] is None and b["clip_keys"] is None and b["clip_sample"] is None and "audio" not in b
        assert b["audio_seconds"] == 0 and "ctc_targets" not in b
        assert (b["input_ids"] != SPEECH).all()  # no speech placeholder
        text, speech = b["text_targets"], b["speech_targets"]
        assert text.shape == speech.shape == b["input_ids"].shape
        assert not ((text != IGNORE) & (speech != IGNORE)).any()  # one head per position
        if b["output_type"] == "text2token":
            assert (text == IGNORE).all()
            for row, key in zip(speech, b["keys"]):
                i = int(key[-1])
                assert row[row != IGNORE].tolist() == [S, 7, 8 + i, 4095, S]
        else:
            assert b["output_type"] == "text2text" and (speech == IGNORE).all()
            assert all(int((row != IGNORE).sum()) >= 2 for row in text)  # "five" and EOS


def test_filters_per_batch_group(text_only_shards, tokenizer):
    """A tight target limit for every group, a looser one for TTS: T2T targets are cut, TTS targets pass."""
    filters = Filters.from_config({"max_target_tokens": 1, "groups": {"text2token": {"max_target_tokens": 10}}})
    batches, skips = stream_all(text_only_shards, text_processor(tokenizer, filters))
    assert {b["output_type"] for b in batches} == {"text2token"}
    assert skips["target_too_long"] == 3
    assert filters.for_group("text2token").max_target_tokens == 10 and filters.for_group("text").max_target_tokens == 1
    with pytest.raises(ValueError, match=r"data.filters.groups.text2token: unknown key\(s\) \['max_target_tokenz'\]"):
        Filters.from_config({"groups": {"text2token": {"max_target_tokenz": 10}}})
    with pytest.raises(ValueError, match=r"data.filters: unknown key\(s\) \['max_secondz'\]"):
        Filters.from_config({"max_secondz": 3})


def test_streaming_tts_interleaves_six_text_with_eighteen_speech_tokens(tmp_path, tokenizer):
    """<TEXT2TOKEN> <STREAMING>: the sentence is both the user's text and the reply's text, interleaved 6:18 with
    its codes; a sample whose codes are too few to carry its text at 6:18 is skipped and counted, not cut."""
    with ShardWriter(tmp_path, max_samples=100) as w:
        w.write_text_only("long", {"txt": "one two three four five six seven", "speech_tokens": list(range(40))})
        w.write_text_only("too_few_codes", {"txt": "one two three four five six seven", "speech_tokens": [1, 2, 3]})
    registry = TaskRegistry.from_config()
    builder = SequenceBuilder(tokenizer)
    processor = SampleProcessor(builder, registry, TaskMixture(registry, {"<TEXT2TOKEN> <STREAMING>": 1.0}), Filters())
    batches, skips = stream_all(resolve_shards(str(tmp_path)), processor)
    assert skips == {"bad_layout": 1} and [b["keys"] for b in batches] == [["long"]]
    batch = batches[0]
    assert batch["output_type"] == "text2token_streaming"
    text, speech = batch["text_targets"][0], batch["speech_targets"][0]
    words = builder.encode("one two three four five six seven")
    assert text[text != IGNORE].tolist() == [*words, builder.eos_id]
    assert speech[speech != IGNORE].tolist() == [S, *range(40), S]
    heads = "".join("t" if t != IGNORE else "s" if s != IGNORE else "-" for t, s in zip(text.tolist(), speech.tolist()))
    expected, n_text, n_speech = "", len(words) + 1, 42
    while n_text > 0:
        expected += "t" * min(6, n_text) + "s" * 18
        n_text, n_speech = n_text - 6, n_speech - 18
    assert heads.strip("-") == expected + "s" * n_speech


@pytest.fixture(scope="module")
def dialogue_shards(tmp_path_factory):
    """A 3-turn dialogue (members KEY.wav_1, KEY.wav_2 and KEY.wav) and a 1-turn one, in a WAV shard."""
    out = tmp_path_factory.mktemp("dialogue")
    reply = {"txt": "one two", "answer": "three four", "speech_tokens": [11, 12, 13, 14, 15], "labels": LABELS}
    history = [{"text": "one", "speech_tokens": [1, 2, 3]}, {"text": "two", "speech_tokens": [4, 5, 6]}]
    with ShardWriter(out, max_samples=100, audio_format="wav") as w:
        w.write("three_turns", tone(0.6), 16000, {**reply, "history": history}, history_audio=[tone(0.3), tone(0.45)])
        w.write("one_turn", tone(0.5), 16000, reply)
    return resolve_shards(str(out))


def dialogue_processor(tokenizer, **kw):
    base = TaskRegistry.from_config()
    registry = TaskRegistry([Task.from_tag("S2S", "<S2TCHAT> <TEXT2TOKEN>", output_type="speech2text_token_history")],
                            {}, base.rendering)
    mixture = TaskMixture(registry, {"<S2TCHAT> <TEXT2TOKEN>": 1.0})
    return SampleProcessor(SequenceBuilder(tokenizer), registry, mixture, Filters(), **kw)


def test_history_clips_in_placeholder_order(dialogue_shards, tokenizer):
    with tarfile.open(dialogue_shards[0]) as tar:
        assert {"three_turns.wav_1", "three_turns.wav_2", "three_turns.wav"} <= set(tar.getnames())
    [batch], skips = stream_all(dialogue_shards, dialogue_processor(tokenizer, ctc_targets=True), frame_groups=1)
    assert skips == {}
    row = batch["keys"].index("three_turns")
    mine = [k for k, s in zip(batch["clip_keys"], batch["clip_sample"].tolist()) if s == row]
    assert mine == ["three_turns.wav_1", "three_turns.wav_2", "three_turns"]  # history turns, then the current one
    assert len(batch["clip_keys"]) == 4 and batch["mel"].shape[0] == 4
    assert batch["clip_sample"].tolist() == sorted(batch["clip_sample"].tolist())  # sample-major
    frames = {k: int(n) for k, n in zip(batch["clip_keys"], batch["mel_lengths"])}
    assert frames == {"three_turns.wav_1": 30, "three_turns.wav_2": 45, "three_turns": 60, "one_turn": 50}
    builder = SequenceBuilder(tokenizer)
    for i, key in enumerate(batch["keys"]):
        lengths = [builder.speech_length(frames[k]) for k in batch["clip_keys"] if k.split(".")[0] == key]
        assert int((batch["input_ids"][i] == SPEECH).sum()) == sum(lengths)
        speech = batch["speech_targets"][i]
        assert speech[speech != IGNORE].tolist() == [S, 11, 12, 13, 14, 15, S]  # only the last reply is trained
    assert "ctc_lengths" not in batch  # CTC only where the transcript is the target: an S2S reply is not
    assert batch["audio_seconds"] == pytest.approx(0.3 + 0.45 + 0.6 + 0.5)


def test_model_side_features_pad_masks_of_history_clips(dialogue_shards, tokenizer):
    spec = {"num_time_masks": 2, "max_time": 5, "num_freq_masks": 1, "max_freq": 4}
    [batch], _ = stream_all(dialogue_shards, dialogue_processor(tokenizer, features="model", spec_aug=spec),
                            frame_groups=1)
    assert batch["mel"] is None and batch["audio"].shape[0] == 4
    assert batch["spec_masks"].shape == (4, 3, 3)
    history = [i for i, k in enumerate(batch["clip_keys"]) if ".wav_" in k]
    assert (batch["spec_masks"][history, :, 2] == 0).all()  # no-op masks: history clips are not augmented
    torch.testing.assert_close(batch["mel_lengths"], batch["audio_lengths"] // 160)


def test_original_multi_turn_members_become_history(tmp_path):
    """EChat shards: KEY.wav_1 / KEY.txt_1 and extra.speech_token_1 for turn 1, extra.speech_token for the reply."""
    path = tmp_path / "echat.tar"
    buf = io.BytesIO()
    import soundfile as sf

    sf.write(buf, tone(0.3), 16000, format="WAV", subtype="PCM_16")
    members = {"k.wav": buf.getvalue(), "k.txt": b"reply two", "k.task": b"<S2TCHAT> <TEXT2TOKEN>",
               "k.extra": json.dumps({"speech_token": [4, 5], "speech_token_1": [1, 2], "question": "q"}).encode(),
               "k.wav_1": buf.getvalue(), "k.txt_1": b"reply one"}
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    [raw] = list(read_shard(str(path), SkipCounter()))
    assert raw.meta["history"] == [{"audio": "wav_1", "text": "reply one", "speech_tokens": [1, 2]}]
    assert raw.meta["speech_tokens"] == [4, 5] and raw.meta["target"] == "reply two" and raw.meta["question"] == "q"
    assert raw.members["wav_1"] == members["k.wav_1"]
