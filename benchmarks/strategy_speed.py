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
import tempfile
import time
from pathlib import Path

import torch

from poser_lens.data.generator import persona_families
from poser_lens.data.poser import load_benchmark
from poser_lens.data.schema import model_persona
from poser_lens.hooks import draw_noise, hook_name
from poser_lens.models.zoo import ZooConfig, build_zoo, load_zoo_model
from poser_lens.readout import AnswerIds, answer_readout
from poser_lens.strategies.base import ModelContext
from poser_lens.strategies.common import contrast_direction, layer_grid
from poser_lens.strategies.s2_noise import NoiseStrategy


def find_zoo() -> Path:
    """The default zoo if built, else a small two-model zoo in a temporary folder."""
    default = ZooConfig().folder()
    if (default / "zoo.json").exists():
        return default
    small = ZooConfig(seeds=1, personas=("truth_teller", "reward_maximizer"))
    return build_zoo(small, Path(tempfile.mkdtemp()) / "zoo", progress=False)


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


def compare_s5(zoo: Path, n_models: int, n_prompts: int) -> float:
    """Time the S5 features (last-token residuals of every layer + own answer) both ways."""
    from poser_lens.activations import collect
    from poser_lens.strategies.s5_decision_speed import own_answers

    bench = load_benchmark(zoo / "poser")
    names = sorted(p.name for p in (zoo / "models").iterdir() if p.is_dir())[:n_models]
    t_ref = t_ours = 0.0
    for name in names:
        model, tok = load_zoo_model(zoo, name)
        fam = persona_families(model_persona(name)[0])[0]
        ctx = ModelContext(name, model, tok, fam, bench[fam])
        t0 = time.perf_counter()
        reference_s5(ctx, n_prompts)
        t1 = time.perf_counter()
        acts = collect(model, tok, [s.prompt for s in ctx.prompts[:n_prompts]])
        own_answers(model, tok, acts[:, -1])
        t2 = time.perf_counter()
        t_ref, t_ours = t_ref + t1 - t0, t_ours + t2 - t1
    ratio = t_ref / t_ours
    print(
        f"S5 features, {len(names)} models x {n_prompts} prompts: reference {t_ref:.1f} s, "
        f"poser_lens {t_ours:.2f} s, speed-up {ratio:.1f}x (target >= 10x)"
    )
    return ratio


def main() -> None:
    """Run every comparison and print its ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoo = find_zoo()
    compare_s2(zoo, args.models, args.prompts)
    compare_s5(zoo, args.models, max(args.prompts, 200))


if __name__ == "__main__":
    main()
