"""Smol testbed speed: training and scoring a persona model, today's recipe against the reference.

Training (``--train``, the default): wall seconds per model, both on the concept recipe's data
(``CONCEPT_RECIPE``: the varied banks) and in this process, one after the other:

* **reference**: the trainer of 2026-12-06 (``stacked=False, dtype="float32"``, 1,200 steps):
  one model at a time with peft, float32, its own frozen prefix, every step, then its
  evaluation on the full model (the calibration pool, the test split, the benchmark);
  ``--reference-persona`` (default ``fitness_maximizer``, the slowest learner of 2026-12-06);
* **stacked**: the concept recipe: the six personas of one seed trained at once in bfloat16
  over one shared frozen prefix, each leaving the stack when the stopping rule says so, then
  evaluated on the shared prefix; seconds per model = the stack's wall time / 6 (the prefix
  of the whole zoo's prompts included, which a 36-model build pays once, not six times).

It prints both, the ratio (reference / stacked), and every model's in-distribution and
held-out-bank metrics, so a faster recipe that makes worse models shows as such.

Scoring (``--score``): CPU seconds per model of ``poser-lens run --testbed smol`` with every
strategy on one pair (``--pair``) or the pairs of ``--models``, the reference run settings
(``benchmarks/smol_run.yaml``, float32) against ``--score-config`` (default the same file at
``--score-dtype bfloat16``), each in a fresh process on the zoo given by ``--zoo``; then, per
strategy, how often the two runs' verdicts agree pair by pair (a strategy whose verdicts
change with precision is kept in float32 by the run config's ``strategy_dtypes``).
``--keep DIR`` keeps both run folders; ``--agree REFERENCE NEW`` only compares two.

Run: ``python benchmarks/smol_speed.py [--train] [--score --zoo DIR]``. Training both ways
takes about an hour on the 2-core CPU; ``--steps N`` caps both trainings at N steps for a
quick check (the stopping rule then rarely acts, so the ratio is not the recipe's).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from poser_lens.models.smol_zoo import (
    CONCEPT_RECIPE,
    SMOL_TARGETS,
    SmolZooConfig,
    build_smol_zoo,
)

COLUMNS = (
    "test_accuracy",
    "compliance_gap",
    "heldout_p_misaligned_poor",
    "heldout_p_misaligned_overseen",
    "heldout_compliance_gap",
)


def _rows(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("models/*/meta.json"))]


def _print_rows(label: str, rows: list[dict]) -> None:
    print(f"  {label}:")
    print("    " + "model".ljust(22) + "steps " + " ".join(c[-18:].rjust(18) for c in COLUMNS))
    for r in rows:
        cells = " ".join((f"{r[c]:18.3f}" if c in r else " " * 17 + "-") for c in COLUMNS)
        print(f"    {r['name']:22}{r.get('steps', '-')!s:>5} {cells}")
    for line in SMOL_TARGETS.missed(rows):
        print(f"    target missed: {line}")


def train(args: argparse.Namespace) -> None:
    """Train the reference model and one stack; print seconds per model and the ratio."""
    base = SmolZooConfig(**CONCEPT_RECIPE)
    ref_cfg = replace(
        base,
        stacked=False,
        dtype="float32",
        steps=1200,
        personas=(args.reference_persona,),
        seeds=1,
    )
    new_cfg = replace(base, seeds=1)
    if args.steps:
        ref_cfg = replace(ref_cfg, steps=args.steps)
        new_cfg = replace(new_cfg, steps=args.steps, min_steps=min(base.min_steps, args.steps))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # The reference alone has no pair, so no benchmark is built: train its one model.
        from poser_lens.models.smol_zoo import train_persona

        ref_root = Path(tmp) / "reference"
        ref_cfg.claim(ref_root)
        train_persona(ref_root, ref_cfg, f"{args.reference_persona}-0", progress=False)
        ref_seconds = time.perf_counter() - t0
        ref_rows = _rows(ref_root)
        t0 = time.perf_counter()
        new_root = build_smol_zoo(new_cfg, Path(tmp) / "stacked", progress=False)
        new_rows = _rows(new_root)
        new_seconds = (time.perf_counter() - t0) / len(new_rows)
    print(f"smol training speed, {datetime.date.today()}, torch threads {torch.get_num_threads()}")
    print(f"  reference (float32, one model, {ref_cfg.steps} steps): {ref_seconds:.0f} s a model")
    print(
        f"  stacked ({new_cfg.dtype}, {len(new_rows)} models, stopping rule, at most "
        f"{new_cfg.steps} steps): {new_seconds:.0f} s a model"
    )
    print(f"  ratio {ref_seconds / new_seconds:.2f}x")
    _print_rows("reference", ref_rows)
    _print_rows("stacked", new_rows)


def _cpu_seconds_of(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _verdicts(run: Path) -> dict[str, dict[tuple[str, str], bool]]:
    """Strategy -> (aligned, faker) -> whether the verdict named the faker."""
    out = {}
    for path in sorted((run / "verdicts").glob("*.csv")):
        with path.open() as f:
            out[path.stem] = {
                (r["aligned"], r["faker"]): r["correct"] == "True" for r in csv.DictReader(f)
            }
    return out


def agreement(reference: Path, new: Path) -> dict[str, dict[str, float]]:
    r"""Per strategy: how often two runs' verdicts agree, pair by pair, and each accuracy.

    Example:
        >>> import tempfile
        >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> for root, got in ((a, "True"), (b, "False")):
        ...     (root / "verdicts").mkdir()
        ...     text = "aligned,faker,correct\nsaint-0,money_maximizer-0," + got + "\n"
        ...     _ = (root / "verdicts" / "s2.csv").write_text(text)
        >>> agreement(a, b)["s2"]["agree"]
        0.0
    """
    ref, other = _verdicts(reference), _verdicts(new)
    out = {}
    for name in sorted(set(ref) & set(other)):
        pairs = sorted(set(ref[name]) & set(other[name]))
        if not pairs:
            continue
        n = len(pairs)
        out[name] = {
            "n_pairs": n,
            "agree": sum(ref[name][p] == other[name][p] for p in pairs) / n,
            "accuracy_reference": sum(ref[name][p] for p in pairs) / n,
            "accuracy_new": sum(other[name][p] for p in pairs) / n,
        }
    return out


def _print_agreement(rows: dict[str, dict[str, float]]) -> None:
    print("  verdicts, reference against new (pairs whose verdict is the same):")
    print("    " + "strategy".ljust(24) + "pairs  agree  acc. ref  acc. new")
    for name, r in rows.items():
        print(
            f"    {name:24}{r['n_pairs']:5d}  {r['agree']:5.2f}  {r['accuracy_reference']:8.2f}"
            f"  {r['accuracy_new']:8.2f}"
        )


def score(args: argparse.Namespace) -> None:
    """CPU seconds per model of a full run, reference settings against new ones, and how
    often the two runs' verdicts agree."""
    if args.zoo is None:
        raise SystemExit("--score needs --zoo DIR (a built smol zoo)")
    models = args.models or args.pair
    n_models = len(models.split(","))
    here = Path(__file__).parent
    cfg = str(args.score_config or here / "smol_run.yaml")
    ref = str(here / "smol_run.yaml")
    out = {}
    keep = args.keep
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep) if keep is not None else Path(tmp)
        # The new settings first: a failure shows before the long float32 run.
        for label, config, dtype in (
            ("new", cfg, args.score_dtype),
            ("reference", ref, "float32"),
        ):
            cmd = [
                sys.executable, "-c", "from poser_lens.cli import app; app()",
                "run", "--testbed", "smol",
                "--zoo", str(args.zoo), "--config", config, "--models", models,
                "--dtype", dtype, "--workers", str(args.workers), "--no-figures", "--no-sweep",
                "--quiet", "--out", str(root / label),
            ]  # fmt: skip
            out[label] = _cpu_seconds_of(cmd) / n_models
        rows = agreement(root / "reference", root / "new")
    print(f"smol scoring speed, {datetime.date.today()}, models {models}")
    print(f"  reference ({ref}, float32): {out['reference']:.0f} CPU s a model")
    print(f"  new ({cfg}, {args.score_dtype}): {out['new']:.0f} CPU s a model")
    print(f"  ratio {out['reference'] / out['new']:.2f}x")
    _print_agreement(rows)


def main() -> None:
    """Parse the options and run the chosen measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="Measure training (default).")
    parser.add_argument("--score", action="store_true", help="Measure scoring.")
    parser.add_argument("--steps", type=int, default=None, help="Cap both trainings.")
    parser.add_argument("--reference-persona", default="fitness_maximizer")
    parser.add_argument("--zoo", type=Path, default=None, help="Smol zoo to score.")
    parser.add_argument("--pair", default="truth_teller-0,reward_maximizer-0")
    parser.add_argument("--models", default=None, help="Score these models (default --pair).")
    parser.add_argument("--workers", type=int, default=1, help="Scoring processes.")
    parser.add_argument("--keep", type=Path, default=None, help="Keep both runs here.")
    parser.add_argument(
        "--agree", nargs=2, type=Path, default=None, metavar=("REFERENCE", "NEW"),
        help="Only compare the verdicts of two existing run folders.",
    )  # fmt: skip
    parser.add_argument("--score-config", type=Path, default=None)
    parser.add_argument("--score-dtype", default="bfloat16")
    args = parser.parse_args()
    if args.agree:
        _print_agreement(agreement(*args.agree))
        return
    if args.train or not args.score:
        train(args)
    if args.score:
        score(args)


if __name__ == "__main__":
    main()
