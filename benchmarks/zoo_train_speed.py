"""Zoo fine-tuning speed: stacked models (batched matmuls over a model axis) vs one at a time.

Fine-tunes ``--models`` persona models (the default zoo's records, architecture and matched
recipe, ``--steps`` steps each; personas in turn, seeds 0, 1, ...; all start from one random
base of the zoo's architecture, which costs what the trained base costs) in several ways, on
the same records and batch orders, and prints seconds per model (median of ``--repeats``) and
the ratio to the reference, measured in the same run:

* ``sequential 1 thread x 2 processes`` (the reference): :func:`finetune`, one model after
  another in 2 worker processes of one thread each (``fan_out``), as ``build_zoo`` trained
  persona models before stacking (``ZooConfig(stack=1)``, with TransformerLens's eager
  attention, as then);
* ``sequential 2 threads``: :func:`finetune` in this process;
* ``stacked M, 2 threads``: :func:`finetune_stacked` of stacks of ``M`` models in this
  process, for each ``M`` of ``--stacks`` (and, for the first, with one attention bucket:
  every row padded to the step's longest);
* ``stacked M, 1 thread x 2 processes``: stacks fanned out over 2 worker processes, as
  ``build_zoo`` does (``ZooConfig(stack=M, workers=2)``), for each ``M`` that splits the
  models into an even number of stacks.

Times are wall seconds of the training alone (a worker's start-up and data generation are
left out; a pool's time runs from its first task's start to its last task's end). With
``--cpu`` they are CPU seconds instead (a pool's: summed over its tasks, then halved), which a
busy machine disturbs less: use it with ``--threads 1`` for a rough check there.

With ``--ceiling`` it then profiles one stack (:func:`ceiling`): its operator time by kind and
the best speed-up its operators allow, with the matrix products at this CPU's matmul rate.

Run: ``python benchmarks/zoo_train_speed.py`` (36 models, 70 steps: about 15 minutes on the
2-core machine); ``--quick`` (12 models, 10 steps, stacks 6 and 12) for a check; ``--stacks 6
--ways stacked`` for the reference and the stacked ways of the zoo's default stack alone
(about 7 minutes).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import os
import statistics
import time
from dataclasses import replace

import torch

from poser_lens._pool import fan_out
from poser_lens.data.generator import GeneratedData, generate, persona_split
from poser_lens.data.schema import Scenario
from poser_lens.models import tiny
from poser_lens.models.stacked import StackedNative
from poser_lens.models.training import TrainConfig, finetune, finetune_stacked
from poser_lens.models.zoo import ZooConfig, make_tokenizer

CFG = ZooConfig()


@functools.lru_cache(maxsize=1)
def _setup() -> tuple[GeneratedData, object, object]:
    data = generate(CFG.generator)
    tokenizer = make_tokenizer(data)
    # TransformerLens's eager attention, as the persona models trained before this work (the
    # reference's recipe); a stack runs its own fused attention whatever its models hold.
    return data, tokenizer, tiny.build_native(CFG.model, len(tokenizer), seed=0, fused=False)


def _records(index: int) -> list[Scenario]:
    data, _, _ = _setup()
    persona = CFG.personas[index % len(CFG.personas)]
    return persona_split(data, persona, "train", seed=index, size=CFG.train_size)


def _train(models: tuple[int, ...], steps: int, stacked: bool, buckets: int) -> tuple:
    """Train models (indices) one by one or as one stack; ``(start, end, cpu seconds)``."""
    _, tokenizer, base = _setup()
    ft: TrainConfig = replace(CFG.finetune, target=CFG.target_confidence, steps=steps)
    records = [_records(i) for i in models]
    nets = [copy.deepcopy(base) for _ in models]
    start, cpu = time.time(), time.process_time()
    if stacked:
        stack = StackedNative.stack(nets)
        finetune_stacked(stack, tokenizer, records, ft, seeds=list(models), buckets=buckets)
        stack.unstack_into(nets)
    else:
        for net, recs, seed in zip(nets, records, models, strict=True):
            finetune(net, tokenizer, recs, ft, seed=seed)
    return start, time.time(), time.process_time() - cpu


def _measure(groups: list[tuple[int, ...]], args, *, stacked: bool, buckets: int, pool: bool):
    """Seconds of one run (wall or CPU) over every group of models."""
    tasks = [(g, args.steps, stacked, buckets) for g in groups]
    if pool:
        done = [r for _, r in fan_out(_train, tasks, workers=2)]
        if args.cpu:
            return sum(r[2] for r in done) / 2
        return max(r[1] for r in done) - min(r[0] for r in done)
    done = [_train(*t) for t in tasks]
    return sum(r[2] for r in done) if args.cpu else sum(r[1] - r[0] for r in done)


def ceiling(m: int, steps: int, buckets: int) -> None:
    """Where a stack's training time goes, and the best speed-up its operators allow.

    In this process on one thread: the reference recipe (one model at a time, eager attention)
    and one stack of ``m`` models on the same records, in CPU seconds per model; the stack's
    FLOPs (``FlopCounterMode``, the fused attention kernels included) and its operator time
    by kind (torch's profiler); ``torch.matmul``'s rate at a fine-tuning batch's shapes,
    measured here. Prints the stack's time with its matrix products at that rate and every
    other operator (the fused attention kernels, the activation, norms, copies, the optimiser)
    as measured, and the reference's time over it: the most these operators allow.
    """
    from poser_lens.cost.flops import Arch
    from poser_lens.cost.profile import (
        counted_flops_by_op,
        measure_matmul_rate,
        op_time_shares,
        product_ceiling,
    )
    from poser_lens.readout import token_ids

    torch.set_num_threads(1)
    _, tokenizer, base = _setup()
    group = tuple(range(m))
    reference = _train(group, steps, False, buckets)[2] / m
    stacked = _train(group, steps, True, buckets)[2] / m
    by_op = counted_flops_by_op(lambda: _train(group, steps, True, buckets))
    shares = op_time_shares(lambda: _train(group, steps, True, buckets))
    lengths = [len(t) for i in group for t in token_ids(tokenizer, [r.prompt for r in _records(i)])]
    rate = measure_matmul_rate(
        Arch.from_config(base.cfg), CFG.finetune.batch_size, round(statistics.mean(lengths))
    )
    per_model = {op: flops / m for op, flops in by_op.items()}
    products, now, rest = product_ceiling(stacked, per_model, shares, rate)
    print(
        f"ceiling, one thread, {m} models x {steps} steps, CPU s per model: reference "
        f"{reference:.3f}, stacked {stacked:.3f} (x{reference / stacked:.2f})"
    )
    for kind, share in shares.items():
        print(f"  {kind:28s} {share * stacked:6.3f} CPU s per model ({share:.0%})")
    print(
        f"  matrix products at the matmul limit ({rate / 1e9:.0f} GFLOP/s at the batch's "
        f"shapes): {products:.3f} CPU s per model, now {now:.3f}; with every other operator "
        f"as measured ({rest:.3f}) the stack would take {products + rest:.3f}: best possible "
        f"speed-up with these operators x{reference / (products + rest):.2f}"
    )


def main() -> None:
    """Time every way of fine-tuning and print seconds per model and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=36)
    parser.add_argument("--steps", type=int, default=CFG.finetune.steps)
    parser.add_argument("--stacks", default="6,12,18,36")
    parser.add_argument("--buckets", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in this process")
    parser.add_argument("--cpu", action="store_true", help="CPU seconds, not wall seconds")
    parser.add_argument("--quick", action="store_true", help="12 models, 10 steps, stacks 6,12")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="Then profile one stack (the first of --stacks) on one thread: the best speed-up "
        "its operators allow",
    )
    parser.add_argument(
        "--ways",
        default="",
        help="Comma-separated words: time only the ways whose name holds one (and the reference)",
    )
    args = parser.parse_args()
    if args.quick:
        args.models, args.steps, args.stacks = 12, 10, "6,12"
    torch.set_num_threads(args.threads)
    stacks = [int(m) for m in args.stacks.split(",") if 0 < int(m) <= args.models]
    n = args.models
    singles = [(i,) for i in range(n)]
    half = [tuple(range(0, n, 2)), tuple(range(1, n, 2))]

    def chunks(m: int) -> list[tuple[int, ...]]:
        return [tuple(range(i, min(i + m, n))) for i in range(0, n, m)]

    ways: dict[str, tuple] = {
        "sequential 1 thread x 2 processes": (singles, False, args.buckets, True),
        f"sequential {args.threads} threads": (half, False, args.buckets, False),
    }
    for m in stacks:
        ways[f"stacked {m}, {args.threads} threads"] = (chunks(m), True, args.buckets, False)
    if stacks:
        ways[f"stacked {stacks[0]}, 1 bucket, {args.threads} threads"] = (
            chunks(stacks[0]),
            True,
            1,
            False,
        )
    for m in stacks:
        if len(chunks(m)) % 2 == 0:
            ways[f"stacked {m}, 1 thread x 2 processes"] = (chunks(m), True, args.buckets, True)
    if args.ways:
        words = [w.strip() for w in args.ways.split(",") if w.strip()]
        reference = next(iter(ways))
        ways = {k: v for k, v in ways.items() if k == reference or any(w in k for w in words)}
    _setup()
    print(
        f"{datetime.date.today()}  {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{n} models x {args.steps} steps, {'CPU' if args.cpu else 'wall'} seconds, "
        f"median of {args.repeats}"
    )
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(args.repeats):
        for name, (groups, stacked, buckets, pool) in ways.items():
            seconds = _measure(groups, args, stacked=stacked, buckets=buckets, pool=pool)
            times[name].append(seconds / n)
    ref = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:40s} {med:7.3f} s/model   speed-up x{ref / med:.2f}")
    if args.ceiling and stacks:
        ceiling(stacks[0], args.steps, args.buckets)


if __name__ == "__main__":
    main()
