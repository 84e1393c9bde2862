"""The probe tool: a linear probe finds separable labels and not random ones; the table runs on real shards."""

import torch
from tiny_models import tiny_model

from osum.diagnose import linear_probe, main
from osum.models.artifacts import save_checkpoint
from osum.models.backbone import build_backbone


def test_linear_probe_reads_separable_labels_only():
    g = torch.Generator().manual_seed(0)
    y = ["a" if i % 2 else "b" for i in range(200)]
    x = torch.randn(200, 16, generator=g) + torch.tensor([[3.0 if v == "a" else -3.0] + [0.0] * 15 for v in y])
    assert linear_probe(x[:100], y[:100], x[100:], y[100:]) > 0.95
    shuffled = [y[(i * 7) % 200] for i in range(200)]
    noise = torch.randn(200, 16, generator=g)
    assert linear_probe(noise[:100], shuffled[:100], noise[100:], shuffled[100:]) < 0.75


def test_probe_table_on_real_shards(mini_data, tokenizer_dir, tmp_path, capsys):
    from omegaconf import OmegaConf

    cfg = tiny_model(tokenizer_dir, utterance_slots=1)
    backbone, _ = build_backbone(cfg)
    template = OmegaConf.to_container(OmegaConf.load("configs/template/chatml.yaml"))
    template["utterance_slots"] = 1
    text = {"tokenizer": tokenizer_dir, "template": template, "rendering": {}}
    ckpt = save_checkpoint(backbone, {"model": cfg, "text": text}, tmp_path / "tiny.ckpt")
    main(["probe", "--ckpt", str(ckpt), "--train-shards", str(mini_data / "mini" / "train"),
          "--test-shards", str(mini_data / "mini" / "test"), "--kinds", "gender", "age"])
    out = capsys.readouterr().out
    print(out)
    lines = out.strip().splitlines()
    assert lines[1].split()[:4] == ["kind", "n_train", "n_test", "majority"]
    assert [line.split()[0] for line in lines[2:]] == ["gender", "age"]
    assert all(line.endswith("%") for line in lines[2:])
