"""SIGTERM / SIGUSR1 during training: a checkpoint at the next step, exit code 75, and `ckpt_path=auto` continues."""

import signal

import pytest
import torch

from osum.callbacks.preemption import EXIT_PREEMPTED, slurm_job_to_requeue


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_exits_and_resume_continues(sig, start_training, finish, wait_until, logged_losses, tmp_path):
    run_dir = tmp_path / "exp" / "mini"
    proc = start_training("trainer.max_steps=12", "callbacks.checkpoint.every_n_train_steps=100")
    wait_until(lambda: max(logged_losses(run_dir), default=-1) >= 1, proc)  # two steps trained
    proc.send_signal(sig)
    rc, out = finish(proc)
    assert rc == EXIT_PREEMPTED, out[-3000:]
    ckpt = run_dir / "checkpoints" / "preempted.ckpt"
    assert f"{sig.name}: saved {ckpt}" in out and "resume with ckpt_path=auto" in out
    step = torch.load(ckpt, weights_only=True)["global_step"]
    assert 2 <= step < 12

    rc, out = finish(start_training("trainer.max_steps=12", "ckpt_path=auto", name="resume.out"))
    assert rc == 0, out[-3000:]
    assert f"resuming from {ckpt}" in out and "finished at step 12" in out
    assert set(logged_losses(run_dir)) == set(range(12))


def test_requeue_only_in_an_sbatch_job(monkeypatch):
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "77"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    assert slurm_job_to_requeue() == "77"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_to_requeue() == "70_3"
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # submitit requeues by itself
    assert slurm_job_to_requeue() is None
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation
    assert slurm_job_to_requeue() is None
