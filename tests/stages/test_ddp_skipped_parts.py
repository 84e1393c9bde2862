"""DDP without unused-parameter search, on 2 CPU ranks, with steps that skip the encoder and adapter: the run
goes through, and gives the weights of a single-process run on the same batches (skipped parts not stepped)."""

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).with_name("ddp_alternating.py")
ROOT = Path(__file__).resolve().parents[2]


def run(tokenizer_dir, out, world, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), tokenizer_dir, str(out), str(world), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_two_ranks_alternating_speech_and_text_only_batches(tokenizer_dir, tmp_path):
    single, ddp = tmp_path / "single.pt", tmp_path / "ddp.pt"
    assert run(tokenizer_dir, single, 1).returncode == 0
    proc = run(tokenizer_dir, ddp, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(single), torch.load(ddp)
    assert all(torch.equal(a["initial"][k], b["initial"][k]) for k in a["initial"])
    a, b, start = a["final"], b["final"], a["initial"]
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"2-rank DDP vs 1 process after 4 alternating steps: max weight difference {worst:.2e} over {len(a)} tensors")
    assert worst < 1e-5
    # the adapter trained (on the speech steps); the speech head never ran and was never stepped, in both runs
    assert not torch.equal(b["adapter.proj.weight"], start["adapter.proj.weight"])
    assert torch.equal(b["speech_head.weight"], start["speech_head.weight"])


def test_without_exact_zeros_ddp_fails_the_next_step(tokenizer_dir, tmp_path):
    proc = run(tokenizer_dir, tmp_path / "plain.pt", 2, "plain")
    message = next((line for line in proc.stderr.splitlines() if "were not used in producing the loss" in line), "")
    print("without the zeros, step 2 fails:", message[:160])
    assert proc.returncode != 0 and message
