"""Training-step speed of the token2wav flow model with its estimator at the mel rate (patch 1) and at the
code rate (patch 4), in one process.

    python bench/flow_step.py [--steps 12] [--rounds 2] [--threads 2] [--variant estimator_dim=256 ...]

The mini-size flow (configs/model/token2wav_flow_mini.yaml, ``patch`` overridden) on a real-sized batch:
16 clips of 40 codes (1.6 s), random codes, a random log mel. A step is ``FlowModel.loss`` (speaker vector
from a random segment of the target, as in training), backward and an AdamW step. Each model gets 2
untimed warm-up steps, then ``--rounds`` rounds of ``--steps`` timed steps, the patches taking turns; the
best round of each is reported (a neighbour's load makes single rounds vary), with every round printed.
``--variant KEY=VALUE ...`` adds one more patch-4 model with those config overrides (e.g. a wider estimator).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osum.token2wav.flow import FlowConfig, FlowModel  # noqa: E402

CONFIG = ROOT / "configs" / "model" / "token2wav_flow_mini.yaml"


def mini_config(**overrides) -> FlowConfig:
    d = OmegaConf.to_container(OmegaConf.load(CONFIG), resolve=True)
    d.pop("mel", None)
    return FlowConfig.from_dict({**d, **overrides})


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Run:
    """One model, its optimiser and the batch; ``step`` is one training step."""

    def __init__(self, name: str, cfg: FlowConfig, batch: int, codes_per_clip: int, seed: int = 0):
        torch.manual_seed(seed)
        self.name, self.cfg = name, cfg
        self.model = FlowModel(cfg).train()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01)
        g = torch.Generator().manual_seed(seed)
        self.codes = torch.randint(0, cfg.vocab_size, (batch, codes_per_clip), generator=g)
        self.lengths = torch.full((batch,), codes_per_clip)
        self.mel = cfg.mel_mean + cfg.mel_std * torch.randn(batch, cfg.n_mels, codes_per_clip * cfg.frames_per_code,
                                                            generator=g)
        self.rounds: list[float] = []

    def step(self) -> float:
        out = self.model.loss(self.codes, self.lengths, self.mel)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt.step()
        return float(out["loss"].detach())

    def timed(self, steps: int) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.rounds.append(steps / (time.perf_counter() - start))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--codes", type=int, default=40, help="codes per clip (25 Hz)")
    ap.add_argument("--variant", nargs="*", default=[], metavar="KEY=VALUE",
                    help="also time a patch-4 model with these config overrides")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    runs = [Run("patch 1", mini_config(patch=1), args.batch, args.codes),
            Run("patch 4", mini_config(patch=4), args.batch, args.codes)]
    if args.variant:
        overrides = dict(kv.split("=", 1) for kv in args.variant)
        runs.append(Run("patch 4 " + " ".join(args.variant),
                        mini_config(patch=4, **{k: parse_value(v) for k, v in overrides.items()}),
                        args.batch, args.codes))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x {args.codes} codes "
          f"({args.codes * runs[0].cfg.frames_per_code} mel frames, {args.codes / 25:.1f} s); "
          f"{args.rounds} rounds x {args.steps} steps", flush=True)
    for run in runs:
        run.step(), run.step()  # warm-up
    for i in range(args.rounds):
        for run in runs:
            run.timed(args.steps)
            print(f"  round {i + 1}: {run.name}: {run.rounds[-1]:.2f} steps/s", flush=True)
    for run in runs:
        best = max(run.rounds)
        print(f"{run.name:<28} {run.params / 1e6:5.2f} M params  {best:6.2f} steps/s ({1 / best:.3f} s/step)  "
              f"rounds: {', '.join(f'{r:.2f}' for r in run.rounds)}")
    base = max(runs[0].rounds)
    for run in runs[1:]:
        print(f"{run.name} / patch 1: {max(run.rounds) / base:.2f}x steps/s")


if __name__ == "__main__":
    main()
