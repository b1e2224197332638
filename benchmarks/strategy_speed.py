"""Strategy speed: poser_lens strategies vs reference loops in the style of the Poser code.

Each comparison runs the same models, prompts and settings both ways in one process and
prints the ratio (reference time / poser_lens time); the target is >= 10x on CPU.

* S2 noise sweep: the reference runs one prompt at a time, a full forward with
  ``run_with_cache`` of every hidden state, each (layer, noise kind, draw, coefficient)
  separately, with no reuse; poser_lens runs :meth:`NoiseStrategy.score_model` (every
  variant of a prompt packed in one sequence, prompts batched).
* S5 features: the reference runs one prompt at a time with ``run_with_cache`` of every hook
  and reads the label from the top-1 token; poser_lens collects the last-token residuals of
  every layer in batches (:func:`poser_lens.activations.collect`) and reads the own answer
  from the final residual (no second forward).

Uses the default zoo from the cache (``POSER_LENS_CACHE``), or builds a small two-model zoo
if none is built. Run: ``python benchmarks/strategy_speed.py [--models 2] [--prompts 20]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from poser_lens.cost.profile import OP_KINDS, counted_flops_by_op, op_time_shares, product_ceiling
from poser_lens.data.generator import persona_families
from poser_lens.data.poser import load_benchmark
from poser_lens.data.schema import model_persona
from poser_lens.hooks import draw_noise, hook_name
from poser_lens.models.zoo import ZooConfig, build_zoo, load_zoo_model
from poser_lens.readout import AnswerIds, answer_readout, token_ids
from poser_lens.strategies.base import ModelContext
from poser_lens.strategies.common import contrast_direction, layer_grid
from poser_lens.strategies.s2_noise import NoiseStrategy


def find_zoo(zoo: Path | None = None) -> Path:
    """``zoo`` if given, else the default zoo if built, else a small two-model zoo.

    The small zoo (one seed of two personas, the default architecture and prompts) is built
    once in the cache (``POSER_LENS_CACHE``) and reused by later runs.
    """
    if zoo is not None:
        return zoo
    default = ZooConfig().folder()
    if (default / "zoo.json").exists():
        return default
    small = ZooConfig(seeds=1, personas=("truth_teller", "reward_maximizer"))
    if (small.folder() / "zoo.json").exists():
        return small.folder()
    return build_zoo(small, progress=False)


@torch.no_grad()
def reference_s2(ctx: ModelContext, strategy: NoiseStrategy) -> list[float]:
    """The Poser-style loop: one prompt, one variant, one full forward with all hidden states."""
    c, model, tok = strategy.config, ctx.model, ctx.tokenizer
    ids_of, n_layers, d = AnswerIds.from_tokenizer(tok), ctx.n_layers, int(model.cfg.d_model)
    out = []
    for layer in layer_grid(n_layers, (*c.layer_fracs, c.layer_frac)):
        v, rest = contrast_direction(model, tok, ctx.prompts, layer, n_pairs=c.n_pairs)
        name = hook_name("resid_post", layer, n_layers)
        for kind in c.kinds:
            for i in range(c.n_draws):
                unit = draw_noise(d, kind, seed=ctx.seed * 1000 + i)  # type: ignore[arg-type]
                for coeff in c.coeffs:
                    delta = coeff * v.norm() * unit
                    for s in rest[: c.n_prompts]:
                        ids = tok(s.prompt, return_tensors="pt")["input_ids"]

                        def hook(act, hook, delta=delta):
                            act[:, -1] += delta.to(act.dtype)
                            return act

                        with model.hooks(fwd_hooks=[(name, hook)]):
                            logits, _ = model.run_with_cache(ids)
                        r = answer_readout(logits[:, -1], ids_of, [s.aligned_letter])
                        out.append(float(r.p_misaligned[0]))
    return out


def compare_s2(zoo: Path, n_models: int, n_prompts: int) -> float:
    """Time the S2 sweep both ways on a few models; print and return the speed-up."""
    bench = load_benchmark(zoo / "poser")
    names = sorted(p.name for p in (zoo / "models").iterdir() if p.is_dir())[:n_models]
    strategy = NoiseStrategy(n_prompts=n_prompts)
    t_ref = t_ours = 0.0
    for name in names:
        model, tok = load_zoo_model(zoo, name)
        fam = persona_families(model_persona(name)[0])[0]
        ctx = ModelContext(name, model, tok, fam, bench[fam])
        t0 = time.perf_counter()
        reference_s2(ctx, strategy)
        t1 = time.perf_counter()
        strategy.score_model(ModelContext(name, model, tok, fam, bench[fam]))  # fresh memo
        t2 = time.perf_counter()
        t_ref, t_ours = t_ref + t1 - t0, t_ours + t2 - t1
    ratio = t_ref / t_ours
    print(
        f"S2 noise sweep, {len(names)} models x {n_prompts} prompts: reference {t_ref:.1f} s, "
        f"poser_lens {t_ours:.2f} s, speed-up {ratio:.1f}x (target >= 10x)"
    )
    return ratio


@torch.no_grad()
def reference_s5(ctx: ModelContext, n_prompts: int) -> tuple[list[list[list[float]]], list[str]]:
    """The Poser-style S5 features: one prompt at a time, every hidden state, top-1 label."""
    model, tok = ctx.model, ctx.tokenizer
    n = ctx.n_layers
    names = [hook_name("resid_pre", 0, n)] + [hook_name("resid_post", i, n) for i in range(n)]
    feats, labels = [], []
    for s in ctx.prompts[:n_prompts]:
        ids = tok(s.prompt, return_tensors="pt")["input_ids"]
        logits, cache = model.run_with_cache(ids)
        feats.append([cache[n][0, -1].float().tolist() for n in names])
        labels.append(tok.convert_ids_to_tokens(int(logits[0, -1].argmax())))
    return feats, labels


def _cpu_and_wall(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """The least CPU time and the least wall time of ``repeats`` calls of ``fn``, in seconds."""
    cpu = wall = math.inf
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
    return cpu, wall


#: Kinds of operator the S5 comparison splits its time into (:func:`op_time_shares`): those of
#: :data:`~poser_lens.cost.profile.OP_KINDS` (the matrix products; the fused kernel of
#: :class:`~poser_lens.models.fused.FusedAttention`, its products counted FLOPs too), and
#: the eager attention's masks and softmax (the ``masked_fill`` with its copy of the scores,
#: ``softmax``, the division by the scale); the rest (the MLP's activation, norms, residual
#: additions, copies) is ``other``.
S5_KINDS = {
    **OP_KINDS,
    "attention masks and softmax": (
        "aten::masked_fill_",
        "aten::copy_",
        "aten::_softmax",
        "aten::div",
    ),
}


def _s5_sides(ctx: ModelContext, n_prompts: int) -> dict[str, Callable[[], object]]:
    """The S5 features of one model both ways: the reference loop and poser_lens's."""
    from poser_lens.activations import collect
    from poser_lens.strategies.s5_decision_speed import own_answers

    texts = [s.prompt for s in ctx.prompts[:n_prompts]]

    def ours() -> list[str]:
        acts = collect(ctx.model, ctx.tokenizer, texts)
        return own_answers(ctx.model, ctx.tokenizer, acts[:, -1])

    return {"reference": lambda: reference_s5(ctx, n_prompts), "poser_lens": ours}


def _padded_tokens(lengths: list[int], texts: list[str], batch: int = 32) -> int:
    """Tokens of ``collect``'s batches, padding included (texts sorted by length, then cut)."""
    by_length = [lengths[i] for i in sorted(range(len(texts)), key=lambda i: len(texts[i]))]
    chunks = [by_length[i : i + batch] for i in range(0, len(by_length), batch)]
    return sum(max(c) * len(c) for c in chunks)


def compare_s5(zoo: Path, n_models: int, n_prompts: int, repeats: int = 3) -> float:
    """Time the S5 features (last-token residuals of every layer + own answer) both ways.

    Prints, for the reference loop and for poser_lens: the FLOPs done (counted by torch's
    ``FlopCounterMode`` on the calls, beside the strategy's declared work), the CPU time (the
    least of ``repeats`` runs; CPU time, so other load on the machine inflates it less than
    wall time), the FLOP/s achieved per CPU-second and ``torch.matmul``'s rate on this CPU at
    each one's shapes (one block's products and an unembedding, one thread,
    :func:`~poser_lens.cost.profile.measure_matmul_rate`, measured in the same run): how far each is
    from the machine's limit, and the best speed-up possible, the reference's time over
    poser_lens's FLOPs at that rate. Then where poser_lens's operator time goes. Returns the
    ratio of CPU times.
    """
    from poser_lens.cost import measure_shape, work
    from poser_lens.cost.flops import Arch, human
    from poser_lens.cost.profile import measure_matmul_rate
    from poser_lens.strategies.s5_decision_speed import DecisionSpeedStrategy

    bench = load_benchmark(zoo / "poser")
    names = sorted(p.name for p in (zoo / "models").iterdir() if p.is_dir())[:n_models]
    strategy = DecisionSpeedStrategy(n_prompts=n_prompts)
    labels = ("reference", "poser_lens")
    cpu, wall, counted, declared = ({k: 0.0 for k in labels} for _ in range(4))
    ops: dict[str, Counter[str]] = {k: Counter() for k in labels}  # counted FLOPs by operator
    tokens, padded = [], 0
    sides: dict[str, Callable[[], object]] = {}
    for name in names:
        model, tok = load_zoo_model(zoo, name)
        fam = persona_families(model_persona(name)[0])[0]
        ctx = ModelContext(name, model, tok, fam, bench[fam])
        arch = Arch.from_config(model.cfg)
        shape = measure_shape(
            tok, ctx.prompts[:n_prompts], {}, n_layers=arch.n_layers, n_ctx=arch.n_ctx
        )
        sides = _s5_sides(ctx, n_prompts)
        for label, fn in sides.items():
            c, w = _cpu_and_wall(fn, repeats)
            cpu[label] += c
            wall[label] += w
            by_op = counted_flops_by_op(fn)
            counted[label] += sum(by_op.values())
            ops[label].update(by_op)
            passes = work(strategy, shape, reference=label == "reference")
            declared[label] += sum(p.flops(arch) for p in passes)
        texts = [s.prompt for s in ctx.prompts[:n_prompts]]
        lengths = [len(ids) for ids in token_ids(tok, texts)]
        tokens += lengths
        padded += _padded_tokens(lengths, texts)
    seq = round(sum(tokens) / len(tokens))
    rate = {
        "reference": measure_matmul_rate(arch, 1, seq),
        "poser_lens": measure_matmul_rate(arch, 32, round(padded / len(tokens))),
    }
    ratio = cpu["reference"] / cpu["poser_lens"]
    print(
        f"S5 features, {len(names)} models x up to {n_prompts} prompts: reference "
        f"{cpu['reference']:.2f} CPU s ({wall['reference']:.2f} s wall), poser_lens "
        f"{cpu['poser_lens']:.2f} CPU s ({wall['poser_lens']:.2f} s wall), speed-up {ratio:.1f}x "
        f"in CPU time, {wall['reference'] / wall['poser_lens']:.1f}x in wall time (target >= 10x)"
    )
    print(f"  one torch thread; {len(tokens)} prompts of {seq} tokens on average")
    columns = ("FLOPs", "declared", "CPU s", "FLOP/s", "matmul limit", "of limit")
    print(f"  {'':11s} " + " ".join(f"{c:>13s}" for c in columns))
    for label in labels:
        achieved = counted[label] / cpu[label]
        row = (
            human(counted[label]),
            human(declared[label]),
            f"{cpu[label]:.2f}",
            f"{human(achieved)}/s",
            f"{human(rate[label])}/s",
            f"{achieved / rate[label]:.0%}",
        )
        print(f"  {label:11s} " + " ".join(f"{c:>13s}" for c in row))
    floor = counted["poser_lens"] / rate["poser_lens"]
    print(
        f"  FLOPs reference / poser_lens: {counted['reference'] / counted['poser_lens']:.2f}; at "
        f"the matmul limit poser_lens would take {floor:.2f} CPU s: best possible speed-up "
        f"{cpu['reference'] / floor:.1f}x"
    )
    print(
        "  CPU s by kind of operator (torch's profiler: shares of self CPU time, times the CPU s):"
    )
    shares = {label: op_time_shares(fn, S5_KINDS) for label, fn in sides.items()}
    for kind in shares["poser_lens"]:
        ref, ours = (shares[k][kind] * cpu[k] for k in labels)
        times = f"({ref / ours:.1f}x)" if ref > 0 and ours > 0 else ""
        print(f"    {kind:28s} reference {ref:5.2f}  poser_lens {ours:5.2f}  {times}")
    # The products alone at the matmul limit, every other operator (the fused attention
    # kernel, the eager attention's masks and softmax, the rest) as measured.
    products, now, rest = product_ceiling(
        cpu["poser_lens"], ops["poser_lens"], shares["poser_lens"], rate["poser_lens"]
    )
    print(
        f"  with the matrix products at the matmul limit ({products:.2f} CPU s, now "
        f"{now:.2f}) and every other "
        f"operator as measured ({rest:.2f} CPU s: the fused attention kernel, the activation, "
        f"norms, copies), poser_lens would take {products + rest:.2f} CPU s: best possible "
        f"speed-up with these operators {cpu['reference'] / (products + rest):.1f}x"
    )
    return ratio


def main() -> None:
    """Run every comparison and print its ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="S5: timed runs of each side")
    parser.add_argument("--zoo", type=Path, default=None, help="a built zoo folder to use")
    parser.add_argument("--only", choices=("s2", "s5"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoo = find_zoo(args.zoo)
    if args.only != "s5":
        compare_s2(zoo, args.models, args.prompts)
    if args.only != "s2":
        compare_s5(zoo, args.models, max(args.prompts, 200), args.repeats)


if __name__ == "__main__":
    main()
