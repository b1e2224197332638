"""What each strategy costs on one (model, family) in a run, where strategies share one memo.

Scores every model strategy on one context in the run's order (as
:func:`poser_lens.runner.score_one_model` does: one memo, so later strategies find the work of
earlier ones) and, for comparison, each strategy alone on a fresh context. Per strategy: the
CPU seconds (the least of ``--repeats`` runs, one torch thread, as each scoring worker) and
the FLOPs counted by torch's ``FlopCounterMode``. CPU time, not wall time, so other load on the
machine inflates it less.

It runs against whichever ``poser_lens`` is imported, so two checkouts compare with the same
script (the script reads only what both have)::

    PYTHONPATH=OLD python benchmarks/sharing_cost.py --zoo ZOO --json old.json
    PYTHONPATH=NEW python benchmarks/sharing_cost.py --zoo ZOO --json new.json
    python benchmarks/sharing_cost.py --compare old.json new.json

Uses the zoo given, else the default zoo, else the small zoo of ``strategy_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from poser_lens.cost.profile import counted_flops


def measure(zoo: Path, model_name: str | None, repeats: int) -> dict[str, Any]:
    """Per strategy: CPU seconds and FLOPs in the run's order on one memo, and alone."""
    import poser_lens
    from poser_lens.data.generator import persona_families
    from poser_lens.data.schema import model_persona
    from poser_lens.models.zoo import load_zoo_model
    from poser_lens.strategies import STRATEGY_NAMES, ModelContext, get_strategy, strategy_class
    from poser_lens.testbeds import TestbedConfig, make_testbed

    testbed = make_testbed(TestbedConfig(testbed="tiny", zoo_dir=str(zoo)), progress=False)
    name = model_name or sorted(p.name for p in (zoo / "models").iterdir() if p.is_dir())[0]
    family = next(f for f in persona_families(model_persona(name)[0]) if f in testbed.valid)
    model, tok = load_zoo_model(zoo, name)
    names = [n for n in STRATEGY_NAMES if strategy_class(n).needs_model]
    strategies = [get_strategy(n) for n in names]

    def context() -> Any:
        prompts = testbed.valid[family]
        return ModelContext(name, model, tok, family, prompts, testbed.concepts, seed=0)

    out: dict[str, Any] = {"poser_lens": poser_lens.__file__, "model": name, "family": family}
    for mode in ("run", "alone"):
        cpu = {n: math.inf for n in names}
        for _ in range(repeats):
            ctx = context()
            for s in strategies:
                if mode == "alone":
                    ctx = context()
                c0 = time.process_time()
                s.score_model(ctx)
                cpu[s.name] = min(cpu[s.name], time.process_time() - c0)
        ctx = context()
        flops = {}
        for s in strategies:
            if mode == "alone":
                ctx = context()
            flops[s.name] = counted_flops(lambda s=s, ctx=ctx: s.score_model(ctx))
        out[mode] = {"cpu_s": cpu, "flops": flops}
    return out


def table(results: dict[str, Any]) -> None:
    """Print one measurement: per strategy, in the run's order and alone."""
    run, alone = results["run"], results["alone"]
    print(f"{results['model']} on {results['family']} ({results['poser_lens']})")
    print(f"{'strategy':22s} {'run CPU s':>10s} {'GFLOP':>8s} {'alone CPU s':>12s} {'GFLOP':>8s}")
    for n in run["cpu_s"]:
        print(
            f"{n:22s} {run['cpu_s'][n]:10.3f} {run['flops'][n] / 1e9:8.2f} "
            f"{alone['cpu_s'][n]:12.3f} {alone['flops'][n] / 1e9:8.2f}"
        )
    totals = [sum(d.values()) for d in (run["cpu_s"], run["flops"], alone["cpu_s"], alone["flops"])]
    print(
        f"{'total':22s} {totals[0]:10.3f} {totals[1] / 1e9:8.2f} {totals[2]:12.3f} "
        f"{totals[3] / 1e9:8.2f}"
    )


def compare(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Print the run's CPU seconds and FLOPs per strategy of two measurements, and the saving."""
    print(f"old: {old['poser_lens']}\nnew: {new['poser_lens']}")
    heads = ("old CPU s", "new CPU s", "old GFLOP", "new GFLOP")
    print(f"{'strategy':22s} " + " ".join(f"{h:>10s}" for h in heads))
    a, b = old["run"], new["run"]
    for n in a["cpu_s"]:
        print(
            f"{n:22s} {a['cpu_s'][n]:10.3f} {b['cpu_s'][n]:10.3f} {a['flops'][n] / 1e9:10.2f} "
            f"{b['flops'][n] / 1e9:10.2f}"
        )
    cpu = [sum(x["cpu_s"].values()) for x in (a, b)]
    flops = [sum(x["flops"].values()) for x in (a, b)]
    print(
        f"{'total':22s} {cpu[0]:10.3f} {cpu[1]:10.3f} {flops[0] / 1e9:10.2f} {flops[1] / 1e9:10.2f}"
    )
    print(
        f"saved per (model, family): {cpu[0] - cpu[1]:.3f} CPU s ({1 - cpu[1] / cpu[0]:.1%}), "
        f"{(flops[0] - flops[1]) / 1e9:.2f} GFLOP ({1 - flops[1] / flops[0]:.1%})"
    )


def main() -> None:
    """Measure (and write ``--json``), or compare two measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="a built zoo folder")
    parser.add_argument("--model", default=None, help="model name (default: the first)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the measurement here")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("OLD", "NEW"), default=None)
    args = parser.parse_args()
    if args.compare:
        compare(*(json.loads(p.read_text()) for p in args.compare))
        return
    torch.set_num_threads(1)
    if args.zoo is None:
        from strategy_speed import find_zoo

        args.zoo = find_zoo()
    results = measure(args.zoo, args.model, args.repeats)
    table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
