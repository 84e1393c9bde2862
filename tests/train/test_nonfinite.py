"""A NaN loss skips its optimizer step and is counted; too many in a row save a checkpoint and stop the run."""

import csv

import pytest
import torch

from osum.models.backbone import SpeechLLM
from osum.stages.base import NonFiniteError
from osum.train import run


def test_nan_steps_are_skipped_then_the_run_stops(compose_train, tmp_path, monkeypatch):
    nan_at, forward, calls = {1, 3, 4}, SpeechLLM.forward, []

    def poisoned(self, **inputs):
        out = forward(self, **inputs)
        if len(calls) in nan_at:
            out["text"].loss_sum = out["text"].loss_sum * float("nan")
        calls.append(1)
        return out

    monkeypatch.setattr(SpeechLLM, "forward", poisoned)
    cfg = compose_train("trainer.max_steps=8", "faults.max_nonfinite_in_row=2")
    with pytest.raises(NonFiniteError, match="2 steps in a row"):
        run(cfg)

    run_dir = tmp_path / "exp" / "mini"
    ckpt = torch.load(run_dir / "checkpoints" / "nonfinite-step0000005.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    adam_steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert adam_steps == {2.0}  # steps 0 and 2 updated the weights, 1, 3 and 4 did not
    rows = [r for r in csv.DictReader(open(run_dir / "logs" / "metrics.csv")) if r.get("train/skipped_nonfinite")]
    assert [float(r["train/skipped_nonfinite"]) for r in rows] == [0, 1, 1, 2]
