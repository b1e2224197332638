"""Where the time of a cold default run goes, phase by phase, against this machine's matmul rate.

A cold run (a fresh ``POSER_LENS_CACHE``) of ``poser-lens run``'s default job, in its steps:

* ``data``: the scenarios and the tokenizer;
* ``base``: the shared base language model (until its stopping check passes);
* ``fine-tunes``: the persona models (``--workers`` processes, as ``zoo build``);
* ``benchmark filter``: ``zoo.json`` and the valid-prompt filter;
* ``testbed``: the testbed (the benchmark read back, strategy 4's concept sets);
* ``scoring: <strategy>``: one row per strategy (the confidence baseline first, as every run
  scores it); each runs alone, in this process with one torch thread (as each of the run's
  scoring workers), so strategies that share residuals in a run each pay for their own here;
* ``evaluation``: verdicts, confound controls, the sweep, ``results.json``;
* ``figures`` and ``report``.

Per phase: wall time, CPU time (this process and its finished worker processes) and, for
training and forward passes, the FLOPs and the FLOP/s achieved per CPU-second beside
``torch.matmul``'s rate on one thread at the phase's main shapes (one block's products and the
unembedding at its batch and sequence length, measured in the same run, after the phases).
FLOPs are the analytic counts of :mod:`poser_lens.cost.flops`: the base from its batches (the same
sampling as ``train_base``) and stopping checks, the scoring from each strategy's declared
work on the zoo's measured prompt lengths (:mod:`poser_lens.cost`); the fine-tunes are counted
with ``FlopCounterMode`` on one model trained again in a scratch folder, times the models.
With ``--check`` (default) one model's scoring is also counted with ``FlopCounterMode`` per
strategy, beside the analytic count.

Writes the markdown table to stdout and everything to ``--json``. The default profile takes
longer than ``poser-lens run`` from an empty cache (its scoring runs in one process, and the
counting follows); a short version (tested in ``tests/test_profile_run.py``)::

    python benchmarks/profile_run.py --seeds 1 --personas truth_teller,reward_maximizer \\
        --zoo-config small.yaml --json /tmp/profile.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass
class Phase:
    """One row of the profile."""

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    flops: float | None = None
    flops_method: str = ""
    shape: tuple[int, int] | None = None  # (batch, seq) of the phase's main products
    matmul_flops_per_s: float | None = None
    check: dict[str, float] = field(default_factory=dict)

    @property
    def achieved(self) -> float | None:
        """FLOPs per CPU-second."""
        return self.flops / self.cpu_s if self.flops and self.cpu_s > 0 else None

    @property
    def fraction(self) -> float | None:
        """Achieved over the one-thread matmul rate at the same shapes."""
        if self.achieved is None or not self.matmul_flops_per_s:
            return None
        return self.achieved / self.matmul_flops_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "flops": self.flops,
            "flops_method": self.flops_method,
            "shape_batch_seq": list(self.shape) if self.shape else None,
            "achieved_flops_per_cpu_s": self.achieved,
            "matmul_flops_per_s_one_thread": self.matmul_flops_per_s,
            "fraction_of_matmul_rate": self.fraction,
            "check": self.check,
        }


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have finished (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextmanager
def timed(phases: list[Phase], name: str) -> Iterator[Phase]:
    """Time a phase (wall and CPU) and append it to ``phases``."""
    phase = Phase(name)
    w0, c0 = time.perf_counter(), cpu_seconds()
    yield phase
    phase.wall_s, phase.cpu_s = time.perf_counter() - w0, cpu_seconds() - c0
    phases.append(phase)
    print(f"  {name}: {phase.wall_s:.1f} s wall, {phase.cpu_s:.1f} s CPU", flush=True)


# ----------------------------------------------------------------------------- FLOPs


def base_flops(cfg: Any, data: Any, tokenizer: Any, arch: Any, steps: int) -> tuple[float, int]:
    """Analytic FLOPs of the base's training and stopping checks; and its mean padded length.

    The batches are drawn as ``train_base`` draws them (``random.Random(seed).sample`` of the
    corpus, one per step), so the count is exact for the steps done: each padded to the
    longest, or, with ``cfg.base_packed``, the real tokens alone (the packed forward does no
    work on padding; its attention, quadratic in a row's length, is counted at the mean).
    """
    from poser_lens.cost.flops import Pass, forward_flops
    from poser_lens.models.zoo import base_check_steps, base_corpus
    from poser_lens.readout import token_ids

    lengths = [len(x) for x in token_ids(tokenizer, base_corpus(data))]
    rng = random.Random(cfg.base_seed)
    k = min(cfg.base.batch_size, len(lengths))
    samples = [rng.sample(lengths, k) for _ in range(steps)]
    padded = [sum(b) / k if cfg.base_packed else max(b) for b in samples]
    train = sum(Pass("base step", k, s, backward="weights").flops(arch) for s in padded)
    held_out = [s.prompt for fam in sorted(data.test) for s in data.test[fam][:40]]
    held = sorted(len(x) for x in token_ids(tokenizer, held_out))  # answer_probs sorts
    one_check = sum(
        forward_flops(arch, len(held[i : i + 64]), max(held[i : i + 64]), unembed="last")
        for i in range(0, len(held), 64)
    )
    checks = sum(1 for c in base_check_steps(cfg) if c <= steps)
    return train + checks * one_check, round(sum(padded) / max(len(padded), 1))


def finetune_flops(cfg: Any, root: Path, names: list[str]) -> float:
    """FLOPs of persona models' fine-tunes, calibration and evaluation (FlopCounterMode).

    Trains ``names`` again in a scratch copy of the zoo's base and tokenizer (not timed), as
    the zoo does: one stack (``cfg.stack`` > 1) or one model at a time. ``FlopCounterMode``
    counts matrix products; the stacked path's fused attention kernel
    (``scaled_dot_product_attention`` on the CPU) is not counted, which leaves out a few
    percent.
    """
    from poser_lens.cost.profile import counted_flops
    from poser_lens.models.zoo.train import _train_one, _train_stack

    def train() -> None:
        if cfg.stack > 1:
            _train_stack(str(scratch), cfg.to_dict(), names)
        else:
            for name in names:
                _train_one(str(scratch), cfg.to_dict(), name)

    scratch = Path(tempfile.mkdtemp(prefix="profile_finetune_"))
    try:
        for f in root.iterdir():
            if f.is_file():
                shutil.copy2(f, scratch / f.name)
        shutil.copytree(root / "base", scratch / "base")
        return counted_flops(train)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_scoring(
    testbed: Any, strategy: Any, sample: tuple[str, list[str]], families: list[Any], arch: Any
) -> dict[str, Any]:
    """One model's scoring (its families) counted by FlopCounterMode, beside the analytic."""
    from poser_lens.cost import work
    from poser_lens.cost.flops import total_flops
    from poser_lens.cost.profile import counted_flops
    from poser_lens.strategies import ModelContext

    name, fams = sample
    model, tok = testbed.load(name)
    shapes = {f.family: f.shape for f in families}

    def score() -> None:
        for fam in fams:
            ctx = ModelContext(name, model, tok, fam, testbed.valid[fam], testbed.concepts)
            strategy.score_model(ctx)

    measured = counted_flops(score)
    analytic = sum(total_flops(arch, work(strategy, shapes[fam])) for fam in fams)
    return {"model": name, "analytic": analytic, "flop_counter": measured}


# ----------------------------------------------------------------------------- the run


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Run the phases; returns the profile (phases, machine, settings)."""
    import torch

    from poser_lens.cost import measured_families, strategy_cost
    from poser_lens.cost.flops import Arch
    from poser_lens.cost.profile import measure_matmul_rate
    from poser_lens.data.generator import generate
    from poser_lens.figures import make_figures
    from poser_lens.models import tiny
    from poser_lens.models.zoo import (
        ZooConfig,
        build_base,
        build_persona_models,
        finish_zoo,
        zoo_tokenizer,
    )
    from poser_lens.readout import token_ids
    from poser_lens.report import write_report
    from poser_lens.runner import CONFIDENCE, RunConfig, run, score_models
    from poser_lens.runs import RunDir
    from poser_lens.strategies import STRATEGY_NAMES
    from poser_lens.testbeds import make_testbed, model_families, select_pairs

    cfg = ZooConfig.from_file(args.zoo_config) if args.zoo_config else ZooConfig()
    personas = tuple(args.personas.split(",")) if args.personas else cfg.personas
    cfg = replace(cfg, seeds=args.seeds, personas=personas, workers=args.workers)
    work = Path(args.out or tempfile.mkdtemp(prefix="poser_lens_profile_"))
    root, run_dir = cfg.folder(), work / "run"
    print(f"profile: zoo {root}, run {run_dir}", flush=True)
    phases: list[Phase] = []
    threads = torch.get_num_threads()

    with timed(phases, "data"):
        cfg.claim(root)
        data = generate(cfg.generator)
        tokenizer = zoo_tokenizer(root, data)
    with timed(phases, "base") as base_phase:
        meta = build_base(cfg, root, data, tokenizer, progress=not args.quiet)
    with timed(phases, "fine-tunes") as ft_phase:
        build_persona_models(cfg, root, progress=not args.quiet)
    with timed(phases, "benchmark filter"):
        finish_zoo(cfg, root, data)

    run_cfg = RunConfig(seeds=args.seeds, zoo_dir=str(root), workers=1, seed=0)
    with timed(phases, "testbed"):
        testbed = make_testbed(run_cfg.testbed_config(), progress=False)
    pairs = select_pairs(testbed.pairs, run_cfg.testbed_config())
    folder = RunDir(run_dir)
    names = [CONFIDENCE, *(n for n in STRATEGY_NAMES if n != CONFIDENCE)]
    torch.set_num_threads(1)  # as each of the run's scoring workers
    score_phases = {}
    for name in names:
        with timed(phases, f"scoring: {name}") as phase:
            score_models(
                folder, replace(run_cfg, strategies=(name,)), testbed, pairs, progress=False
            )
        score_phases[name] = phase
    torch.set_num_threads(threads)
    with timed(phases, "evaluation"):
        run(replace(run_cfg, figures=False), run_dir, testbed=testbed, progress=False)
    with timed(phases, "figures"):
        make_figures(folder)
    with timed(phases, "report"):
        write_report(folder)

    # FLOPs and matmul rates (untimed).
    print("counting FLOPs and measuring matmul rates ...", flush=True)
    arch_base = Arch.from_config(tiny.bridge_config(cfg.model, len(tokenizer)))
    steps = int((meta or {}).get("steps") or tiny.read_config(root / "base")[2]["steps"])
    base_phase.flops, base_len = base_flops(cfg, data, tokenizer, arch_base, steps)
    base_phase.flops_method = f"analytic ({steps} steps and their stopping checks)"
    base_phase.shape = (cfg.base.batch_size, base_len)
    models = cfg.model_names()
    group = models[: max(1, min(cfg.stack, len(models)))]
    ft_phase.flops = len(models) / len(group) * finetune_flops(cfg, root, group)
    ft_phase.flops_method = (
        f"FlopCounterMode on {len(group)} model(s) ({', '.join(group)}), x {len(models)} models"
    )
    train_lens = [
        len(x) for x in token_ids(tokenizer, [s.prompt for s in data.train[sorted(data.train)[0]]])
    ]
    ft_phase.shape = (cfg.finetune.batch_size, round(sum(train_lens) / max(len(train_lens), 1)))

    arch, families = measured_families(testbed, pairs)
    sample = next(iter(model_families(pairs).items()))
    for name, phase in score_phases.items():
        strategy = run_cfg.strategy(name)
        cost = strategy_cost(strategy, arch, families)
        if not cost.flops:
            continue
        phase.flops, phase.flops_method = cost.flops, "analytic (declared work, measured prompts)"
        main = max(cost.passes, key=lambda p: p.flops(arch))
        phase.shape = (main.batch, round(main.seq))
        if args.check:
            phase.check = check_scoring(testbed, strategy, sample, families, arch)

    torch.set_num_threads(1)
    rates: dict[tuple[Any, int, int], float] = {}
    for phase in phases:
        if phase.shape is None:
            continue
        a = arch_base if phase.name in ("base", "fine-tunes") else arch
        key = (a, *phase.shape)
        if key not in rates:
            rates[key] = measure_matmul_rate(
                a, phase.shape[0], phase.shape[1], seconds=args.rate_seconds
            )
        phase.matmul_flops_per_s = rates[key]
    torch.set_num_threads(threads)
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": threads,
        },
        "settings": {
            "seeds": args.seeds,
            "personas": list(personas),
            "workers": args.workers,
            "zoo_config": args.zoo_config,
            "zoo": str(root),
            "run": str(run_dir),
            "base_steps": steps,
            "models": len(models),
            "pairs": len(pairs),
        },
        "phases": [p.to_dict() for p in phases],
        "total": {
            "wall_s": round(sum(p.wall_s for p in phases), 1),
            "cpu_s": round(sum(p.cpu_s for p in phases), 1),
            "flops": sum(p.flops or 0 for p in phases),
        },
    }


# ----------------------------------------------------------------------------- output


def _g(x: float | None, scale: float = 1e9, digits: int = 2) -> str:
    return "-" if x is None else f"{x / scale:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The profile as a markdown table and a line naming the phase furthest from the limit."""
    lines = [
        "| phase | wall s | CPU s | GFLOP | GFLOP/s per CPU-s "
        "| matmul GFLOP/s (1 thread, same shapes) | of the rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in result["phases"]:
        frac = p["fraction_of_matmul_rate"]
        lines.append(
            f"| {p['phase']} | {p['wall_s']:.1f} | {p['cpu_s']:.1f} | {_g(p['flops'], digits=1)} "
            f"| {_g(p['achieved_flops_per_cpu_s'])} | {_g(p['matmul_flops_per_s_one_thread'])} "
            f"| {'-' if frac is None else f'{frac:.0%}'} |"
        )
    t = result["total"]
    lines.append(
        f"| total | {t['wall_s']:.1f} | {t['cpu_s']:.1f} | {_g(t['flops'], digits=1)} | | | |"
    )
    rated = [p for p in result["phases"] if p["fraction_of_matmul_rate"] is not None]
    if rated:
        worst = min(rated, key=lambda p: p["fraction_of_matmul_rate"])
        best = max(rated, key=lambda p: p["fraction_of_matmul_rate"])
        heavy = max(rated, key=lambda p: p["cpu_s"])
        lines += [
            "",
            f"Furthest from the matmul rate: {worst['phase']} "
            f"({worst['fraction_of_matmul_rate']:.1%}); closest: {best['phase']} "
            f"({best['fraction_of_matmul_rate']:.0%}); most CPU time among FLOP phases: "
            f"{heavy['phase']} ({heavy['cpu_s']:.0f} s, {heavy['fraction_of_matmul_rate']:.0%}).",
        ]
    checks = [p for p in result["phases"] if p["check"]]
    if checks:
        lines += ["", "Analytic FLOPs against FlopCounterMode on one model's scoring:", ""]
        lines += [
            "| strategy | model | analytic GFLOP | FlopCounterMode GFLOP | ratio |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for p in checks:
            c = p["check"]
            name = p["phase"].removeprefix("scoring: ")
            lines.append(
                f"| {name} | {c['model']} | {c['analytic'] / 1e9:.3f} "
                f"| {c['flop_counter'] / 1e9:.3f} | {c['analytic'] / c['flop_counter']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Parse, profile, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="Models per persona (default 6).")
    parser.add_argument("--personas", help="Comma-separated personas (default: all six).")
    parser.add_argument("--zoo-config", help="YAML/JSON zoo settings (as `zoo build --config`).")
    parser.add_argument("--workers", type=int, default=2, help="Fine-tuning processes.")
    parser.add_argument("--cache", help="POSER_LENS_CACHE to build in (default: a fresh one).")
    parser.add_argument("--out", help="Folder for the run (default: a temporary one).")
    parser.add_argument("--json", default="runs/profile.json", help="Where to write the JSON.")
    parser.add_argument("--rate-seconds", type=float, default=0.5, help="Per matmul rate.")
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="Skip the FlopCounterMode check."
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    args = parser.parse_args()
    os.environ["POSER_LENS_CACHE"] = args.cache or tempfile.mkdtemp(prefix="poser_lens_cold_")
    result = profile(args)
    table = markdown(result)
    print()
    print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "markdown": table}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
