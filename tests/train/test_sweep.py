"""`-m optim.lr=a,b` (hydra.mode=MULTIRUN): every sweep point trains in its own run directory and run name."""

import yaml


def test_each_sweep_point_has_its_own_run_dir(start_training, finish, tmp_path):
    rc, out = finish(start_training("hydra.mode=MULTIRUN", "optim.lr=1e-4,3e-4", "trainer.max_steps=1",
                                    "callbacks.checkpoint.every_n_train_steps=1"))
    assert rc == 0, out[-3000:]
    sweep = tmp_path / "exp" / "mini-multirun"
    for num, lr in ((0, 1e-4), (1, 3e-4)):
        run_dir = sweep / str(num)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["optim"]["lr"] == lr and config["run_dir"] == str(run_dir)
        assert config["run_name"] == f"mini-{num}"
        assert (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "logs" / "metrics.csv").exists()
