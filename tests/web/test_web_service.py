"""`osum.web.inputs` and `osum.web.service` without a browser or HTTP: the bad-input rules (each message names
the file or field), resampling, which modes a model can do, and each mode's answer being the model's own."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf
import torch

from osum.inference import DecodeOptions
from osum.web.inputs import InputError, read_audio, wav_bytes
from osum.web.service import DemoService


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def encoded(audio: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, rate, format=fmt)
    return out.getvalue()


def upload(name: str, data: bytes) -> dict:
    return {"name": name, "data": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def speech_service(random_models):
    return DemoService.load(str(random_models["speech"]), str(random_models["flow"]), max_seconds=5.0,
                            max_new_tokens=12, max_reply_tokens=12, max_codes=20)


def test_another_rate_and_channels_are_resampled_and_reported():
    clip = read_audio("stereo.flac", encoded(tone(1.0, 44100, channels=2), 44100, "FLAC"), max_seconds=5)
    assert (clip.rate, clip.channels, clip.audio.dtype) == (44100, 2, np.float32)
    assert abs(len(clip.audio) - 16000) <= 1
    assert clip.describe() == {"name": "stereo.flac", "rate": 44100, "channels": 2, "seconds": 1.0,
                               "resampled": True}
    assert read_audio("a.wav", encoded(tone(0.5, 16000), 16000), 5).describe()["resampled"] is False


@pytest.mark.parametrize(("name", "data", "message"), [
    ("notes.txt", b"this is a text file, not audio\n" * 20, "notes.txt is not an audio file this demo can read"),
    ("empty.wav", b"", "empty.wav is empty"),
    ("long.wav", encoded(tone(6.0, 8000), 8000), "long.wav is 6.0 s long; this demo takes at most 5 s"),
    ("quiet.wav", encoded(np.zeros(8000, np.float32), 16000), "quiet.wav is silent"),
    ("click.wav", encoded(tone(0.01, 16000), 16000), "click.wav is too short"),
])
def test_bad_files_are_named_in_the_message(name, data, message):
    with pytest.raises(InputError, match=message):
        read_audio(name, data, max_seconds=5)


def test_wav_bytes_are_a_16_bit_wav():
    data = wav_bytes(tone(0.25, 16000) * 4)  # clipped, not wrapped
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert data[:4] == b"RIFF" and rate == 16000 and len(audio) == 4000 and np.abs(audio).max() <= 1.0


def test_modes_without_a_trained_speech_head_or_without_flow_say_why(random_models):
    understanding = DemoService.load(str(random_models["understanding"]), str(random_models["flow"]))
    modes = {m["id"]: m for m in understanding.info()["modes"]}
    assert modes["understand"]["available"] and modes["s2t"]["available"]
    for mode in ("s2s", "tts"):
        assert not modes[mode]["available"] and "speech head was never trained" in modes[mode]["reason"]
    with pytest.raises(InputError, match="TTS is not available: this model's speech head was never trained"):
        understanding.run({"mode": "tts", "text": "hello"})
    no_flow = DemoService.load(str(random_models["speech"]))
    reasons = {m["id"]: m["reason"] for m in no_flow.info()["modes"]}
    assert "no --flow given" in reasons["s2s"] and "no --flow given" in reasons["tts"]


def test_info_lists_the_understanding_tasks(speech_service):
    info = speech_service.info()
    assert all(m["available"] for m in info["modes"]) and info["think"] == "language"
    assert "<TRANSCRIBE> <GENDER>" in info["tasks"] and "<GENDER>" in info["tasks"]
    assert not any("<CHAT>" in t or "TEXT2" in t for t in info["tasks"])


@pytest.mark.parametrize(("request_", "message"), [
    ({"mode": "sing"}, "unknown mode 'sing'"),
    ({"mode": "understand", "task": "<TRANSCRIBE>"}, "no audio in 'audio': upload a file or record one"),
    ({"mode": "understand", "task": "<SHOUT>", "audio": "tone"}, "task: unknown task '<SHOUT>'"),
    ({"mode": "understand", "task": "<CHAT> <THINK>", "audio": "tone"}, "not an understanding task.*S2T chat"),
    ({"mode": "understand", "task": "", "prompt": " ", "audio": "tone"}, "give a task tag string"),
    ({"mode": "tts", "text": "   "}, "text: the text to speak is empty"),
    ({"mode": "tts", "text": "hi", "seed": "x"}, "seed: 'x' is not a whole number"),
    ({"mode": "s2t", "audio": {"name": "broken.wav", "data": "%%%"}}, "'audio' of broken.wav is not base64"),
])
def test_bad_requests_name_the_field(speech_service, request_, message):
    if request_.get("audio") == "tone":
        request_ = {**request_, "audio": upload("a.wav", encoded(tone(0.5, 16000), 16000))}
    with pytest.raises(InputError, match=message):
        speech_service.run(request_)


def test_understanding_answers_what_the_model_answers(speech_service):
    wav = encoded(tone(1.0, 22050), 22050)
    out = speech_service.run({"mode": "understand", "task": "<TRANSCRIBE>  <GENDER>", "audio": upload("a.wav", wav)})
    assistant = speech_service.assistant
    speech, lengths = assistant.speech([read_audio("a.wav", wav, 5).audio])
    opts = DecodeOptions(max_new_tokens=12)
    instruction = assistant.instruction(assistant.registry.get("<TRANSCRIBE> <GENDER>"), opts)
    assert out["answer"] == assistant.answer(speech, lengths, [instruction], "text", opts)[0]
    assert out["task"] == "<TRANSCRIBE> <GENDER>" and out["input"]["rate"] == 22050 and out["input"]["resampled"]
    assert "transcript" in out and "gender" in out["fields"]
    free = speech_service.run({"mode": "understand", "prompt": "what is said?", "audio": upload("a.wav", wav)})
    assert free["instruction"] == "what is said?" and free["task"] is None and "transcript" not in free


def test_conversations_keep_history_until_a_new_one(speech_service):
    clip = upload("turn.wav", encoded(tone(0.8, 16000), 16000))
    cid = speech_service.new_conversation()
    first = speech_service.run({"mode": "s2s", "audio": clip, "conversation": cid})
    second = speech_service.run({"mode": "s2s", "audio": clip, "conversation": cid})
    assert (first["turn"], first["kept"], first["output_type"]) == (1, 0, "speech2text_token_think")
    assert (second["turn"], second["kept"], second["output_type"]) == (2, 1, "speech2text_token_history")
    assert [t["turn"] for t in second["turns"]] == [1, 2]
    for turn in (first, second):  # random weights: codes or a note that there were none
        assert (turn["wav"] is not None and turn["wav"][:4] == b"RIFF") or turn["note"]
    other = speech_service.run({"mode": "s2t", "audio": clip, "conversation": cid})
    assert other["turn"] == 1, "S2T and S2S keep their own history"
    fresh = speech_service.new_conversation(cid)
    assert fresh != cid and cid not in speech_service.conversations
    again = speech_service.run({"mode": "s2s", "audio": clip, "conversation": fresh})
    assert (again["turn"], again["kept"], again["output_type"]) == (1, 0, "speech2text_token_think")
    plain = speech_service.run({"mode": "s2t", "audio": clip, "conversation": fresh, "think": False})
    assert (plain["turn"], plain["output_type"], plain["think"]) == (1, "s2t_chat_history", None)  # no think task


def test_a_single_turn_layout_answers_each_turn_alone(random_models):
    service = DemoService.load(str(random_models["osum_layout"]), max_reply_tokens=8)
    info = service.info()
    assert info["history"] == 0 and "no multi-turn layout" in info["history_note"]
    clip = upload("turn.wav", encoded(tone(0.8, 16000), 16000))
    cid = service.new_conversation()
    turns = [service.run({"mode": "s2t", "audio": clip, "conversation": cid}) for _ in range(2)]
    assert [(t["turn"], t["kept"], t["output_type"]) for t in turns] == [(1, 0, "s2t_chat_think"), (2, 0, "s2t_chat_think")]


def test_tts_is_seeded_and_spoken(speech_service):
    first = speech_service.run({"mode": "tts", "text": "  turn on   the light "})
    again = speech_service.run({"mode": "tts", "text": "turn on the light"})
    assert first["text"] == "turn on the light" and first["codes"] == again["codes"]
    if first["codes"]:
        assert first["wav"] == again["wav"] and first["wav"][:4] == b"RIFF"
        assert first["seconds"] == pytest.approx(first["codes"] * 0.04, abs=0.05)


def test_a_flow_model_of_another_codebook_fails_at_load(random_models, tmp_path):
    from osum.token2wav import Token2Wav
    from osum.token2wav.flow import FlowConfig, FlowModel
    from osum.token2wav.mel import MelConfig

    torch.manual_seed(0)
    small = FlowModel(FlowConfig(vocab_size=8, encoder_dim=16, encoder_layers=1, estimator_dim=16,
                                 estimator_blocks=1, speaker_dim=8))
    folder = Token2Wav(small, MelConfig()).export(tmp_path / "small")
    with pytest.raises(ValueError, match="knows 8 speech codes.*generates 64"):
        DemoService.load(str(random_models["speech"]), str(folder))
