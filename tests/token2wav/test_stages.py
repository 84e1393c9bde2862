"""The token2wav stages: model configs (entry-point keys left out, unknown keys named), non-finite steps
skipped, the configs recorded in the checkpoint."""

import math

import lightning as L
import pytest
import torch
from conftest import VOCAB
from torch.utils.data import DataLoader

from osum.token2wav.stages import CHECKPOINT_KEY, FlowStage, VocoderStage, split_model_config

FLOW = {"vocab_size": VOCAB, "encoder_dim": 16, "encoder_layers": 1, "estimator_dim": 16, "estimator_blocks": 1,
        "heads": 2, "speaker_dim": 8, "mel": {"n_mels": 80}}
OPTIM = {"lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-6, "weight_decay": 0.01}
SCHED = {"name": "cosine", "warmup_steps": 0, "min_ratio": 0.1}


def test_mel_config_is_split_off_and_unknown_keys_named():
    mel, own = split_model_config(FLOW)
    assert mel.n_mels == 80 and "mel" not in own and own["vocab_size"] == VOCAB
    with pytest.raises(ValueError, match="encoder_width"):
        FlowStage({**FLOW, "encoder_width": 3}, OPTIM, SCHED)
    with pytest.raises(ValueError, match="n_mels"):
        FlowStage({**FLOW, "n_mels": 40}, OPTIM, SCHED)
    with pytest.raises(ValueError, match="n_mels"):
        VocoderStage({"n_mels": 40, "mel": {}}, OPTIM, SCHED)


def batch(nan: bool = False):
    codes = torch.randint(0, VOCAB, (2, 6))
    mel = torch.randn(2, 80, 24) - 5
    if nan:
        mel[0, 0, 0] = math.nan
    return {"keys": ["a", "b"], "codes": codes, "code_lengths": torch.tensor([6, 4]), "mel": mel,
            "audio_seconds": 0.48, "skips": {"no_audio": 1}}


def test_a_non_finite_step_is_skipped_and_the_checkpoint_records_the_configs(tmp_path):
    torch.manual_seed(0)
    stage = FlowStage(FLOW, OPTIM, SCHED, run_dir=str(tmp_path), faults={"max_nonfinite_in_row": 3})
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(stage, DataLoader([batch(), batch(nan=True), batch()], batch_size=None))
    assert trainer.global_step == 3 and stage._nonfinite_total == 1
    assert all(torch.isfinite(p).all() for p in stage.parameters())
    assert (tmp_path / "skipped_samples_rank0.json").read_text().count('"no_audio": 3')
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    record = torch.load(tmp_path / "x.ckpt", weights_only=True)[CHECKPOINT_KEY]
    assert record["kind"] == "flow" and record["model"]["encoder_dim"] == 16 and record["mel"]["hop_length"] == 160
