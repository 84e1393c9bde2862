"""Layer features, the code-count rule, and the SpeechTokenizer folder (train, save, load, encode)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from osum.speech_tokens.features import LayerFeatures, n_codes, resolve_layer
from osum.speech_tokens.tokenizer import CODEBOOK_NAME, CONFIG_NAME, ENCODER_NAME, SpeechTokenizer

LENGTHS = [201, 359, 639, 640, 641, 800, 1599, 16000, 16161, 35000]  # 35000: 3 passes of the 1 s encoder


def test_code_count_rule():
    assert [n_codes(n) for n in (201, 640, 641, 800, 16000, 16161, 480000)] == [1, 1, 1, 2, 25, 26, 750]
    assert n_codes(16000, pool=1) == 50
    with pytest.raises(ValueError, match="more than 200 samples"):
        n_codes(200)


def test_n_codes_matches_the_encoder_output(whisper_dir):
    feats, _ = LayerFeatures.from_whisper(whisper_dir, layer=1)
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in LENGTHS]
    batched = feats.clips(audios, batch_size=4)
    assert [len(f) for f in batched] == [n_codes(n) for n in LENGTHS]
    for audio, together in zip(audios, batched, strict=True):  # padding in a batch changes nothing
        torch.testing.assert_close(feats.clips([audio])[0], together, atol=1e-5, rtol=1e-4)


def test_layer_features_are_the_pooled_hidden_state_of_that_layer(whisper_dir):
    from transformers import WhisperModel

    hf = WhisperModel.from_pretrained(whisper_dir).encoder.eval()
    audio = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1  # 100 frames: hf's window
    first, _ = LayerFeatures.from_whisper(whisper_dir, layer=1)
    last, _ = LayerFeatures.from_whisper(whisper_dir, layer=-1)
    assert (first.layer, first.final_norm, last.layer, last.final_norm) == (1, False, 2, True)
    with torch.no_grad():
        out = hf(first.mel(audio).T[None], output_hidden_states=True)
    pooled = [h[0].view(25, 2, -1).mean(1) for h in (out.hidden_states[1], out.last_hidden_state)]
    torch.testing.assert_close(first.clips([audio])[0], pooled[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(last.clips([audio])[0], pooled[1], atol=1e-5, rtol=1e-4)
    assert len(first.encoder.layers) == 1 and isinstance(first.encoder.layer_norm, torch.nn.Identity)


def test_layer_index_and_bad_clips(whisper_dir):
    assert [resolve_layer(i, 4) for i in (1, 4, -1, -4)] == [1, 4, 4, 1]
    for bad in (0, 5, -5):
        with pytest.raises(ValueError, match=f"layer {bad} is out of range for an encoder of 4 layers"):
            resolve_layer(bad, 4)
    feats, _ = LayerFeatures.from_whisper(whisper_dir)
    good = np.zeros(1000, dtype=np.float32)
    with pytest.raises(ValueError, match="key_b: audio must be mono"):
        feats.clips([good, np.zeros((2, 1000), np.float32)], names=["key_a", "key_b"])
    with pytest.raises(ValueError, match="key_a: 100 samples is too short"):
        feats.clips([good[:100]], names=["key_a"])
    with pytest.raises(ValueError, match="clip 1: audio has NaN"):
        feats.clips([good, np.full(1000, np.nan, np.float32)])


@pytest.fixture(scope="module")
def saved(whisper_dir, clips, tmp_path_factory):
    """A tokenizer trained from a copy of the Whisper folder that is deleted before loading the result."""
    root = tmp_path_factory.mktemp("tok")
    moved = shutil.copytree(whisper_dir, root / "whisper")
    tokenizer = SpeechTokenizer.train(moved, clips, codes=8, layer=1, seed=0, batch_size=2)
    tokenizer.save(root / "tokenizer")
    shutil.rmtree(moved)
    return tokenizer, root / "tokenizer"


def test_save_load_round_trip(saved, clips):
    tokenizer, folder = saved
    loaded = SpeechTokenizer.load(folder)
    assert (loaded.codes, loaded.rate, tokenizer.rate) == (8, 25.0, 25.0)
    codes = [tokenizer.encode(c) for c in clips]
    assert loaded.encode_batch(clips, batch_size=3) == codes
    assert [len(c) for c in codes] == [n_codes(len(c)) for c in clips]
    assert all(0 <= c < 8 for seq in codes for c in seq) and len({c for seq in codes for c in seq}) > 1
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert {k: config[k] for k in ("format", "version", "layer", "pool", "final_norm", "codes", "n_mels",
                                   "sample_rate", "metric")} == {
        "format": "osum-speech-tokenizer", "version": 1, "layer": 1, "pool": 2, "final_norm": False, "codes": 8,
        "n_mels": 80, "sample_rate": 16000, "metric": "cosine"}
    assert config["encoder"] == {"n_mels": 80, "d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64,
                                 "max_source_positions": 50}
    assert config["source"]["encoder_layers"] == 2 and config["source"]["layer_arg"] == 1
    assert config["training"]["clips"] == len(clips)
    assert config["training"]["frames"] == sum(n_codes(len(c)) for c in clips)
    names = set(load_file(str(folder / ENCODER_NAME)))
    assert "layers.0.fc1.weight" in names and not any(n.startswith("layers.1.") for n in names)
    assert "layer_norm.weight" not in names  # layer 1 of 2 without the final norm: not stored


def test_load_refuses_broken_folders(saved, tmp_path):
    _, folder = saved
    with pytest.raises(FileNotFoundError, match="no speech_tokenizer.json"):
        SpeechTokenizer.load(tmp_path)
    broken = shutil.copytree(folder, tmp_path / "v2")
    config = json.loads((broken / CONFIG_NAME).read_text())
    (broken / CONFIG_NAME).write_text(json.dumps({**config, "version": 2}))
    with pytest.raises(ValueError, match="version 2"):
        SpeechTokenizer.load(broken)
    (broken / CONFIG_NAME).write_text(json.dumps({k: v for k, v in config.items() if k != "pool"}))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['pool'\]"):
        SpeechTokenizer.load(broken)
    (broken / CONFIG_NAME).write_text(json.dumps(config))
    save_file({"centroids": torch.zeros(5, 32)}, str(broken / CODEBOOK_NAME))
    with pytest.raises(ValueError, match=r"centroids \(5, 32\), expected \(codes 8"):
        SpeechTokenizer.load(broken)
