"""Stop and go: a run killed with SIGKILL at a random step after its first checkpoint, restarted with
`ckpt_path=auto`, ends with the weights and logged losses of an uninterrupted run of the same length."""

import random
import signal

import pytest
import torch

STEPS = ("trainer.max_steps=8", "callbacks.checkpoint.every_n_train_steps=2")


def test_killed_and_resumed_run_matches_uninterrupted(start_training, finish, wait_until, logged_losses, tmp_path):
    whole = start_training(*STEPS, "run_name=whole", name="whole.out")
    killed = start_training(*STEPS, "run_name=killed", name="killed.out")
    run_dir = tmp_path / "exp" / "killed"
    kill_after = random.randint(2, 5)  # a logged step after the first checkpoint (end of step 2)
    wait_until(lambda: max(logged_losses(run_dir), default=-1) >= kill_after, killed)
    killed.send_signal(signal.SIGKILL)
    assert finish(killed)[0] == -signal.SIGKILL
    rc, out = finish(start_training(*STEPS, "run_name=killed", "ckpt_path=auto", name="resumed.out"))
    assert rc == 0 and "finished at step 8" in out, out[-3000:]
    rc, out = finish(whole)
    assert rc == 0, out[-3000:]

    expected = torch.load(tmp_path / "exp" / "whole" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    got = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    worst = max((expected[k].float() - got[k].float()).abs().max().item() for k in expected)
    assert worst <= 1e-6, f"killed after step {kill_after}: weights differ by {worst}"
    losses = logged_losses(tmp_path / "exp" / "whole")
    assert len(losses) == 8 and logged_losses(run_dir) == pytest.approx(losses, abs=1e-6), f"killed after {kill_after}"
    print(f"killed after step {kill_after}, resumed to step 8: max |weight difference| {worst:.1e}, "
          f"losses {[round(v, 4) for v in logged_losses(run_dir).values()]} equal to the uninterrupted run")
