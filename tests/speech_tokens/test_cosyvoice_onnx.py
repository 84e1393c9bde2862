"""The CosyVoice ONNX wrappers on tiny torch models exported with the released models' inputs and outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from speech_clips import bursts, sweep
from torch import nn

from osum.data.features import log_mel
from osum.speech_tokens.cosyvoice import CampPlusOnnx, CosyVoiceTokenizerOnnx, campplus_fbank

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
# the TorchScript exporter: ~0.2 s a model here, against ~3 s for torch.export's
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class TinySpeechTokenizer(nn.Module):
    """(1, 128, T) feats + (1,) int32 lengths -> (1, ceil(T/2)) int64 codes, padding frames masked."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(128, 16, kernel_size=3, stride=2, padding=1)

    def forward(self, feats: torch.Tensor, feats_length: torch.Tensor) -> torch.Tensor:
        real = torch.arange(feats.shape[2])[None, None, :] < feats_length[:, None, None]
        return self.conv(feats * real.to(feats.dtype)).argmax(dim=1)


class TinyCampPlus(nn.Module):
    """(1, T, 80) fbank -> (1, 192) embedding."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(80, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x)).mean(dim=1)


def export(module: nn.Module, args: tuple, path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                      dynamic_axes=axes, dynamo=False)


def test_speech_tokenizer_onnx_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = TinySpeechTokenizer()
    path = tmp_path / "speech_tokenizer_v1.onnx"
    export(model, (torch.randn(1, 128, 40), torch.tensor([40], dtype=torch.int32)), path,
           ["feats", "feats_length"], ["indices"], {"feats": {2: "T"}, "indices": {1: "N"}})
    onnx_tokenizer = CosyVoiceTokenizerOnnx(path)
    assert (onnx_tokenizer.codes, onnx_tokenizer.rate) == (4096, 50.0)
    audios = [sweep(1.3, 200, 5000, 0), bursts(0.45, 1)]
    for audio, codes in zip(audios, onnx_tokenizer.encode_batch(audios), strict=True):
        feats = log_mel(audio, 128).T[None]
        with torch.no_grad():
            expected = model(feats, torch.tensor([feats.shape[2]], dtype=torch.int32))[0].tolist()
        assert codes == expected and len(codes) == (len(audio) // 160 + 1) // 2
    with pytest.raises(ValueError, match="clip 0: 50.0 s is longer than the model's 30 s"):
        onnx_tokenizer.encode_batch([np.zeros(16000 * 50, np.float32)])


def test_campplus_onnx_matches_torch(tmp_path):
    torch.manual_seed(1)
    model = TinyCampPlus()
    path = tmp_path / "campplus.onnx"
    export(model, (torch.randn(1, 30, 80),), path, ["input"], ["output"], {"input": {1: "T"}})
    campplus = CampPlusOnnx(path)
    audio = sweep(0.9, 300, 3000, 2)
    feats = campplus_fbank(audio)
    assert feats.shape == (88, 80)
    torch.testing.assert_close(feats.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    with torch.no_grad():
        expected = model(feats[None])[0].numpy()
    embedding = campplus.embed(audio)
    assert embedding.shape == (192,)
    np.testing.assert_allclose(embedding, expected, atol=1e-5, rtol=1e-4)


def test_wrong_models_fail_when_opened(tmp_path):
    path = tmp_path / "not_a_tokenizer.onnx"
    export(TinyCampPlus(), (torch.randn(1, 30, 80),), path, ["input"], ["output"], {"input": {1: "T"}})
    with pytest.raises(ValueError, match=r"expected inputs \['feats', 'feats_length'\].*has input"):
        CosyVoiceTokenizerOnnx(path)
    wrong = tmp_path / "wrong_campplus.onnx"  # 40-bin input: not CAM++
    export(nn.Linear(40, 192), (torch.randn(1, 30, 40),), wrong, ["input"], ["output"], {"input": {1: "T"}})
    with pytest.raises(ValueError, match=r"expected one input of fbank frames \(1, T, 80\)"):
        CampPlusOnnx(wrong)
    with pytest.raises(FileNotFoundError, match="no such ONNX model file"):
        CampPlusOnnx(tmp_path / "missing.onnx")
