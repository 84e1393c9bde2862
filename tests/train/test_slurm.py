"""A 2-node SLURM job simulated on this machine: two processes with the environment srun gives each task,
gloo DDP, `trainer.num_nodes=2 trainer.devices=1`; both ranks log the same (global-token mean) loss."""

import re
import socket
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srun_env(rank: int, port: int) -> dict[str, str]:
    return {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": "0", "SLURM_NODEID": str(rank), "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "osum-mini",
            "SLURM_LAUNCH_NODE_IPADDR": "127.0.0.1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def test_two_nodes_one_task_each(start_training, finish, tmp_path):
    port = free_port()
    args = ("strategy=ddp", "trainer.num_nodes=2", "trainer.max_steps=3", "callbacks.checkpoint.every_n_train_steps=3")
    procs = [start_training(*args, name=f"rank{r}.out", env=srun_env(r, port)) for r in (0, 1)]
    outs = [finish(p) for p in procs]
    for rc, out in outs:
        assert rc == 0, out[-3000:]
    assert "distributed_backend=gloo" in outs[0][1]
    losses = [re.search(r"rank (\d) finished at step 3: .*'train/loss': ([0-9.]+)", out).groups() for _, out in outs]
    assert [rank for rank, _ in losses] == ["0", "1"]
    assert losses[0][1] == losses[1][1]
    print(f"2 simulated nodes (gloo): loss at step 3 on rank 0 {losses[0][1]}, rank 1 {losses[1][1]}")
    run_dir = tmp_path / "exp" / "mini"
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()


def test_submitit_launcher_config_owns_requeue():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional: pip install osum[slurm]")
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", ["+recipe=mini", "hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.max_num_timeout > 0
