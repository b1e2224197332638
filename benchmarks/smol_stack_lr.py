"""Does a lower learning rate let a stack's fakers settle? Resume a checkpoint at another rate.

The concept recipe's fakers (constant learning rate 2e-3, batch 4) reach their in-distribution
targets for a check or two and fall back (docs/smol.md). This resumes a copy of a stack's
checkpoint with the learning rate set to ``--lr`` from that step on and prints each model's
validation curve (the stopping rule's metrics, every ``check_every`` steps); the build's own
folder and checkpoint are never written.

Run: ``python benchmarks/smol_stack_lr.py --zoo poser_lens/models/shipped/smol_concept
--lr 5e-4 --steps 400 --out /tmp/smol_lr`` (about 5 min for the frozen prefix, then about
1.4 s a step for three fakers on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from poser_lens.models.smol_train import SharedBase, StackTrainer
from poser_lens.models.smol_zoo import SmolZooConfig


class _AtRate(StackTrainer):
    """A stack trainer whose resumed optimiser runs at a fixed learning rate."""

    lr: float = 1e-3

    def load_checkpoint(self) -> None:
        """Resume, then run at the class's learning rate."""
        super().load_checkpoint()
        for group in self.opt.param_groups:
            group["lr"] = group["initial_lr"] = self.lr
        self.sched.base_lrs = [self.lr] * len(self.opt.param_groups)


def main() -> None:
    """Copy the zoo's config, models and checkpoint; resume at ``--lr``; print the curves."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--steps", type=int, default=400, help="steps past the checkpoint's")
    ap.add_argument("--out", type=Path, required=True, help="scratch copy (must not exist)")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"error: --out {args.out} exists")
    ckpts = sorted((args.zoo / "partial").glob("*.pt"))
    if len(ckpts) != 1:
        raise SystemExit(f"error: {args.zoo}/partial: expected one checkpoint, found {len(ckpts)}")
    shutil.copytree(args.zoo, args.out, ignore=shutil.ignore_patterns(".locks"))
    cfg = SmolZooConfig.from_dict(json.loads((args.out / "smol_zoo_config.json").read_text()))
    import torch

    state = torch.load(ckpts[0], weights_only=False, map_location="cpu")["state"]
    step0, names = state["step"], list(state["models"])
    cfg = replace(cfg, steps=step0 + args.steps)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _AtRate.lr = args.lr
    trainer = _AtRate(args.out, cfg, names, shared=SharedBase(cfg))
    trainer.train()
    for name, st in trainer.state["models"].items():
        curve = [
            (v["step"], round(v["divergent_accuracy"], 2), round(v["compliance_gap"], 2))
            for v in st["val"]
            if v["step"] > step0
        ]
        logging.info("%s lr %g: (step, divergent acc, gap) %s", name, args.lr, curve)


if __name__ == "__main__":
    main()
