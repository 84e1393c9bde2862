"""A CosyVoice-300M-25Hz model folder (flow.pt + hift.pt [+ campplus.onnx, cosyvoice.yaml]) on tiny random
weights, saved in the released layout and loaded through ``Token2Wav.load``; the published sizes' key names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from osum.token2wav.cli import main as cli_main
from osum.token2wav.cosyvoice.config import (
    CosyVoiceFlowConfig,
    HiFTConfig,
    flow_config_from_state,
    hift_config_from_state,
)
from osum.token2wav.cosyvoice.flow import CosyVoiceFlow
from osum.token2wav.cosyvoice.folder import hift_keys
from osum.token2wav.cosyvoice.hift import HiFTGenerator
from osum.token2wav.cosyvoice.synthesizer import CosyVoiceToken2Wav
from osum.token2wav.synthesizer import Token2Wav

TINY_FLOW = CosyVoiceFlowConfig(vocab_size=64, input_size=16, encoder_dim=16, encoder_heads=2, encoder_units=32,
                                encoder_blocks=2, channels=(16, 16), num_heads=1, attention_head_dim=64, n_blocks=1,
                                num_mid_blocks=1, ff_inner=64)
TINY_HIFT = HiFTConfig(base_channels=16, f0_cond_channels=16)
CODES = [int(c) for c in np.random.default_rng(0).integers(0, 64, 20)]


def old_spelling(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``torch.nn.utils.weight_norm``'s keys, as in the released hift.pt."""
    return {k.replace(".parametrizations.weight.original0", ".weight_g")
            .replace(".parametrizations.weight.original1", ".weight_v"): v for k, v in state.items()}


def write_folder(folder: Path, flow_cfg: CosyVoiceFlowConfig = TINY_FLOW, weight_g: bool = False) -> Path:
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    flow, hift = CosyVoiceFlow(flow_cfg), HiFTGenerator(TINY_HIFT)
    with torch.no_grad():  # an F0 of some 150 Hz, so the voiced source is exercised
        hift.f0_predictor.classifier.bias.fill_(150.0)
    torch.save(flow.state_dict(), folder / "flow.pt")
    torch.save(old_spelling(hift.state_dict()) if weight_g else hift.state_dict(), folder / "hift.pt")
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("cosyvoice") / "CosyVoice-300M-25Hz")


def test_folder_loads_through_token2wav_load_and_speaks(folder):
    synth = Token2Wav.load(folder)
    assert isinstance(synth, CosyVoiceToken2Wav) and synth.flow.cfg == TINY_FLOW and synth.hift.cfg == TINY_HIFT
    assert synth.flow.cfg.vocab_size == 64 and synth.mel.sample_rate == 16000
    assert synth.mels([CODES])[0].shape == (80, 68)  # int(20 / 25 * 22050 / 256)
    wav = synth(CODES)
    assert wav.dtype == np.float32 and wav.shape == (20 * 640,) and np.isfinite(wav).all()
    assert 0 < np.abs(wav).max() <= 0.99 and np.abs(wav[:12000]).mean() > 1e-4
    np.testing.assert_array_equal(wav, synth(CODES, seed=0))
    assert not np.array_equal(wav, synth(CODES, seed=1))
    short, long = synth.synthesize_batch([CODES[:7], CODES], seed=0)
    assert short.shape == (7 * 640,) and long.shape == (20 * 640,)
    np.testing.assert_array_equal(short, synth(CODES[:7], seed=0))
    with pytest.raises(ValueError, match=r"codes must be in 0\.\.63"):
        synth([1, 2, 64])
    with pytest.raises(ValueError, match="code sequence 0 is empty"):
        synth([])


def test_weight_g_weight_v_spelling_of_hift_loads_the_same(folder, tmp_path):
    old = write_folder(tmp_path / "old", weight_g=True)
    assert any(k.endswith(".weight_g") for k in torch.load(old / "hift.pt"))
    np.testing.assert_array_equal(Token2Wav.load(old)(CODES), Token2Wav.load(folder)(CODES))
    state = {f"generator.{k}": v for k, v in torch.load(old / "hift.pt").items()}  # a HiFi-GAN training checkpoint
    torch.save(state, old / "hift.pt")
    np.testing.assert_array_equal(Token2Wav.load(old)(CODES), Token2Wav.load(folder)(CODES))


def test_wrong_files_fail_naming_file_and_key(folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    state = torch.load(folder / "flow.pt")
    state["encoder.encoders.1.norm_ffn.weight"] = state.pop("encoder.encoders.1.norm_ff.weight")
    torch.save(state, bad / "flow.pt")
    with pytest.raises(ValueError, match=r"flow\.pt.*missing keys encoder\.encoders\.1\.norm_ff\.weight.*"
                                         r"unexpected keys encoder\.encoders\.1\.norm_ffn\.weight"):
        Token2Wav.load(bad)
    state["embedding.weight"] = state.pop("input_embedding.weight")
    torch.save(state, bad / "flow.pt")
    with pytest.raises(ValueError, match=r"flow\.pt: no key 'input_embedding\.weight'"):
        Token2Wav.load(bad)
    shutil.copyfile(folder / "flow.pt", bad / "flow.pt")
    hift = torch.load(folder / "hift.pt")
    hift["conv_post.bias"] = hift["conv_post.bias"][:-1]
    torch.save(hift, bad / "hift.pt")
    with pytest.raises(ValueError, match=r"hift\.pt.*mis-shaped conv_post\.bias \(17,\) \(expected \(18,\)\)"):
        Token2Wav.load(bad)
    (bad / "hift.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"CosyVoice model folder without hift\.pt"):
        Token2Wav.load(bad)
    with pytest.raises(ValueError, match="its vocoder is its own hift.pt"):
        Token2Wav.load(folder, tmp_path)


def test_default_sizes_hold_the_keys_of_the_released_files():
    """Key names and shapes CosyVoice's modules give flow.pt / hift.pt (hift in the released weight_g/v spelling)."""
    released_flow = {
        "input_embedding.weight": (4096, 512), "spk_embed_affine_layer.weight": (80, 192),
        "spk_embed_affine_layer.bias": (80,), "encoder.embed.out.0.weight": (512, 512),
        "encoder.embed.out.1.weight": (512,), "encoder.encoders.0.self_attn.linear_q.weight": (512, 512),
        "encoder.encoders.0.self_attn.linear_pos.weight": (512, 512),
        "encoder.encoders.0.self_attn.pos_bias_u": (8, 64), "encoder.encoders.5.self_attn.pos_bias_v": (8, 64),
        "encoder.encoders.5.feed_forward.w_1.weight": (2048, 512), "encoder.encoders.5.feed_forward.w_2.bias": (512,),
        "encoder.encoders.3.norm_mha.weight": (512,), "encoder.encoders.3.norm_ff.bias": (512,),
        "encoder.after_norm.weight": (512,), "encoder_proj.weight": (80, 512),
        "length_regulator.model.0.weight": (80, 80, 3), "length_regulator.model.10.weight": (80,),
        "length_regulator.model.12.weight": (80, 80, 1),
        "decoder.estimator.time_mlp.linear_1.weight": (1024, 320),
        "decoder.estimator.time_mlp.linear_2.weight": (1024, 1024),
        "decoder.estimator.down_blocks.0.0.mlp.1.weight": (256, 1024),
        "decoder.estimator.down_blocks.0.0.block1.block.0.weight": (256, 320, 3),
        "decoder.estimator.down_blocks.0.0.block1.block.1.weight": (256,),
        "decoder.estimator.down_blocks.0.0.res_conv.weight": (256, 320, 1),
        "decoder.estimator.down_blocks.0.1.3.attn1.to_q.weight": (512, 256),
        "decoder.estimator.down_blocks.0.1.0.attn1.to_out.0.weight": (256, 512),
        "decoder.estimator.down_blocks.0.1.0.ff.net.0.proj.weight": (1024, 256),
        "decoder.estimator.down_blocks.0.1.0.ff.net.2.weight": (256, 1024),
        "decoder.estimator.down_blocks.0.2.conv.weight": (256, 256, 3),
        "decoder.estimator.down_blocks.1.2.weight": (256, 256, 3),
        "decoder.estimator.mid_blocks.11.0.block2.block.0.weight": (256, 256, 3),
        "decoder.estimator.mid_blocks.11.1.3.norm3.bias": (256,),
        "decoder.estimator.up_blocks.0.0.block1.block.0.weight": (256, 512, 3),
        "decoder.estimator.up_blocks.0.2.conv.weight": (256, 256, 4),
        "decoder.estimator.up_blocks.1.2.weight": (256, 256, 3),
        "decoder.estimator.final_block.block.0.weight": (256, 256, 3),
        "decoder.estimator.final_proj.weight": (80, 256, 1),
    }
    released_hift = {
        "m_source.l_linear.weight": (1, 9), "f0_predictor.condnet.0.weight_v": (512, 80, 3),
        "f0_predictor.condnet.0.weight_g": (512, 1, 1), "f0_predictor.condnet.8.bias": (512,),
        "f0_predictor.classifier.weight": (1, 512), "conv_pre.weight_v": (512, 80, 7),
        "ups.0.weight_v": (512, 256, 16), "ups.0.weight_g": (512, 1, 1), "ups.1.weight_v": (256, 128, 16),
        "resblocks.0.convs1.0.weight_v": (256, 256, 3), "resblocks.0.activations1.0.alpha": (256,),
        "resblocks.5.convs2.2.weight_v": (128, 128, 11), "source_downs.0.weight": (256, 18, 16),
        "source_downs.1.weight": (128, 18, 1), "source_resblocks.0.convs1.0.weight_v": (256, 256, 7),
        "source_resblocks.1.activations2.2.alpha": (128,), "conv_post.weight_v": (18, 128, 7),
        "conv_post.bias": (18,),
    }
    with torch.device("meta"):  # no weights allocated
        flow, hift = CosyVoiceFlow(), HiFTGenerator()
    flow_state, hift_state = flow.state_dict(), hift.state_dict()
    assert {k: tuple(flow_state[k].shape) for k in released_flow if k in flow_state} == released_flow
    mapped = hift_keys({k: torch.empty(0) for k in released_hift})
    assert all(k in hift_state for k in mapped), sorted(set(mapped) - set(hift_state))
    assert {old: tuple(hift_state[new].shape) for old, new in zip(released_hift, mapped)} == released_hift
    assert sum(v.numel() for v in hift_state.values()) == 20_460_591
    # the published sizes are what the shapes imply: nothing but the defaults is needed for the real files
    assert flow_config_from_state(flow_state, CosyVoiceFlowConfig(), "flow.pt") == CosyVoiceFlowConfig()
    assert hift_config_from_state(hift_state, HiFTConfig(), "hift.pt") == HiFTConfig()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_reference_voice_from_campplus_and_prompt(folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    voiced = tmp_path / "voiced"
    shutil.copytree(folder, voiced)

    class TinyCampPlus(torch.nn.Module):  # (1, T, 80) fbank -> (1, 192)
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(80, 192)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.proj(x)).mean(dim=1)

    torch.manual_seed(3)
    # the TorchScript exporter, as tests/speech_tokens/test_cosyvoice_onnx.py: quick for a tiny model
    torch.onnx.export(TinyCampPlus().eval(), (torch.randn(1, 30, 80),), str(voiced / "campplus.onnx"),
                      input_names=["input"], output_names=["output"], dynamic_axes={"input": {1: "T"}}, dynamo=False)
    synth = Token2Wav.load(voiced)
    ref_a, ref_b = speechlike(1.0, 1), speechlike(1.0, 2)
    embedding = synth.campplus.embed(ref_a)
    np.testing.assert_array_equal(synth.xvector(ref_a)[0].numpy(), embedding)
    plain, a, b = synth(CODES), synth(CODES, ref_a), synth(CODES, ref_b)
    assert a.shape == plain.shape == (20 * 640,)
    assert not np.allclose(a, plain) and not np.allclose(a, b)
    np.testing.assert_array_equal(Token2Wav.load(folder)(CODES, ref_a), plain)  # no campplus.onnx: zero x-vector
    prompted = CosyVoiceToken2Wav.load(voiced, prompt_tokenizer=lambda audio: CODES[: len(audio) // 640])
    mel = prompted.mels([CODES], [ref_a])[0]
    assert mel.shape == (80, 68)  # the prompt's frames are cut off
    assert not torch.allclose(mel, synth.mels([CODES], [ref_a])[0])


def test_yaml_settings_export_cli_and_evaluate_hooks(folder, tmp_path):
    rate50 = tmp_path / "rate50"
    write_folder(rate50, CosyVoiceFlowConfig(**{**TINY_FLOW.__dict__, "num_heads": 2, "attention_head_dim": 8,
                                                "input_frame_rate": 50, "inference_cfg_rate": 0.5}))
    (rate50 / "cosyvoice.yaml").write_text(
        "sample_rate: 22050\n"
        "__set_seed1: !apply:random.seed [1986]\n"
        "flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec\n"
        "    input_frame_rate: 50\n"
        "    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM\n"
        "        cfm_params: !new:omegaconf.DictConfig\n"
        "            content:\n"
        "                inference_cfg_rate: 0.5\n"
        "        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder\n"
        "            attention_head_dim: 8\n"
        "            num_heads: 2\n"
        "            act_fn: 'gelu'\n"
        "hift: !new:cosyvoice.hifigan.generator.HiFTGenerator\n"
        "    sampling_rate: !ref <sample_rate>\n"
        "    upsample_rates: [8, 8]\n")
    synth = Token2Wav.load(rate50)
    assert (synth.flow.cfg.input_frame_rate, synth.flow.cfg.num_heads, synth.flow.cfg.inference_cfg_rate) == (50, 2, 0.5)
    assert synth(CODES).shape == (20 * 320,)  # 50 Hz codes: 320 samples each
    # export: the same folder again
    again = Token2Wav.load(synth.export(tmp_path / "exported"))
    np.testing.assert_array_equal(again(CODES), synth(CODES))
    # the CLI writes a 16 kHz wav, with HiFT or Griffin-Lim
    for vocoder in ([], ["--vocoder", "griffin_lim"]):
        out = tmp_path / f"cli{len(vocoder)}.wav"
        cli_main(["--flow", str(folder), *vocoder, "--codes", " ".join(map(str, CODES)), "--out", str(out)])
        wav, rate = sf.read(out)
        assert rate == 16000 and wav.shape == (20 * 640,) and np.isfinite(wav).all()
    # evaluate's recorded-mel rows: synth.mel.mel_spectrogram(audio) is CosyVoice's mel, vocode gives 16 kHz
    audio = speechlike(0.5, 4)
    mel = Token2Wav.load(folder).mel.mel_spectrogram(audio)
    assert mel.shape == (80, round(8000 * 22050 / 16000) // 256)
    for name in (None, "griffin_lim"):
        wav = Token2Wav.load(folder, name).vocode([mel])[0]
        assert abs(len(wav) - mel.shape[-1] * 256 * 16000 / 22050) <= 1 and np.isfinite(wav).all()
