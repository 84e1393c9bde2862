"""Models for the web demo tests.

``random_models``: real tiny models with random weights, written in seconds (a checkpoint whose speech head is
set, one whose speech head was never trained, a token2wav export folder): enough for the server's and the
service's rules. ``trained_models``: real tiny checkpoints trained through `python -m osum.train` (tests/web/
web_models.py) for the browser test, which needs a model whose answers have tags, think sections and codes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import tiny_model

ROOT = Path(__file__).resolve().parents[2]
CODES = 64


def text_side(tokenizer_dir: str, layout: str = "chatml") -> dict:
    template = yaml.safe_load((ROOT / "configs" / "template" / "chatml.yaml").read_text())
    template.update(utterance_slots=0, speech_codes=CODES)
    if layout == "osum":  # configs/template/osum.yaml over chatml.yaml
        template.update(layout="osum", eos_token="<|endoftext|>")
    rendering = {"prompt_file": None, "answer_separator": "<开始回答>", "time_decimals": 1, "lowercase": True,
                 "label_sets": None, "think": "language"}
    return {"tokenizer": tokenizer_dir, "template": template, "rendering": rendering}


def write_random_checkpoint(tokenizer_dir: str, path: Path, speech_head: bool, layout: str = "chatml") -> Path:
    """A checkpoint (the format every stage writes) of a tiny backbone with random weights; ``speech_head``: its
    speech head is set (a trained one's bias is never all zero), else left as built (an understanding model's)."""
    from osum.models.artifacts import save_checkpoint
    from osum.models.backbone import build_backbone

    model = tiny_model(tokenizer_dir, speech_token_num=CODES + 1, freeze=[])
    model["llm"]["config"].update(num_hidden_layers=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    backbone, _ = build_backbone(model)
    if speech_head:
        with torch.no_grad():
            backbone.speech_head.bias.normal_(std=0.5)
    return save_checkpoint(backbone, {"model": model, "text": text_side(tokenizer_dir, layout)}, path)


@pytest.fixture(scope="session")
def random_models(tokenizer_dir, tmp_path_factory):
    """{"speech": ckpt, "understanding": ckpt, "osum_layout": ckpt, "flow": token2wav export folder}."""
    from osum.token2wav import Token2Wav
    from osum.token2wav.flow import FlowConfig, FlowModel
    from osum.token2wav.mel import MelConfig

    tmp = tmp_path_factory.mktemp("web_random")
    torch.manual_seed(0)
    flow = FlowModel(FlowConfig(vocab_size=CODES, encoder_dim=32, encoder_layers=1, estimator_dim=32,
                                estimator_blocks=1, speaker_dim=16, steps=2))
    return {"speech": write_random_checkpoint(tokenizer_dir, tmp / "speech.ckpt", speech_head=True),
            "understanding": write_random_checkpoint(tokenizer_dir, tmp / "understanding.ckpt", speech_head=False),
            "osum_layout": write_random_checkpoint(tokenizer_dir, tmp / "osum.ckpt", speech_head=False, layout="osum"),
            "flow": Token2Wav(flow, MelConfig()).export(tmp / "token2wav")}


@pytest.fixture(scope="session")
def trained_models(mini_data, tmp_path_factory):
    """{"understanding", "dialogue", "flow", "test_wav"}: see tests/web/web_models.py."""
    from web_models import WHISPER, train_web_models

    if not (WHISPER / "config.json").exists():
        pytest.skip("run `make assets` (real Whisper tiny.en weights)")
    return train_web_models(mini_data, tmp_path_factory.mktemp("web_trained"))
