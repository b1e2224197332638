"""Work the strategies of one (model, family) share through the context's memo changes nothing.

Each shared piece is the very computation a strategy ran alone (the same batches, the same
operations), so scores are equal exactly, not approximately: the contrast prompts of S1 and S2
read at every block of their grid in one forward per side, the forward of S6's attention that
also gives the patching detector's clean readout, and the first held-out read that every S3
curve starts from.
"""

import copy

import pytest
import torch
from conftest import fresh
from s4s6_support import contexts

from poser_lens.adapters import LowRankAdapter
from poser_lens.data.prompts import critical_prompts
from poser_lens.hooks import hook_name
from poser_lens.models.fused import eager
from poser_lens.readout import encode, last_logits
from poser_lens.strategies import STRATEGY_NAMES, ModelContext, get_strategy, strategy_class
from poser_lens.strategies.common import (
    answer_readout_batched,
    contrast_direction,
    critical_forwards,
    last_token_attention,
    layer_grid,
)
from poser_lens.strategies.memo import ContrastResiduals, CriticalForwards, InitialHeldout
from poser_lens.strategies.oversight_patching import PatchingConfig, _clean_readout
from poser_lens.strategies.s3_learning_speed import (
    LoraSpeedConfig,
    family_seed,
    initial_heldout,
    learning_curve,
)
from poser_lens.strategies.variants import cached_direction

pytestmark = pytest.mark.usefixtures("one_thread")

#: Settings that fit the small zoo (as tests/test_cost.py).
SMALL = {
    "s1_belief": {"n_pairs": 3},
    "s2_noise": {"n_pairs": 3},
    "s3_lora": {"n_heldout": 3, "batch_size": 2, "n_steps": 2, "layers": (5 / 40, 1.0)},
    "s3_full": {"n_heldout": 3, "batch_size": 2, "n_steps": 2},
}
MODEL_STRATEGIES = [n for n in STRATEGY_NAMES if strategy_class(n).needs_model]


@pytest.fixture(scope="module")
def ctx(small_zoo):
    return contexts(small_zoo)[1]


def test_every_score_is_the_same_shared_or_alone(ctx):
    """The run's order on one memo gives exactly the scores of each strategy on its own."""
    strategies = [get_strategy(n, **SMALL.get(n, {})) for n in MODEL_STRATEGIES]
    together = fresh(ctx)
    shared = {s.name: s.score_model(together) for s in strategies}
    for s in strategies:
        assert s.score_model(fresh(ctx)) == shared[s.name], s.name
    kinds = {type(k) for k in together.memo}
    assert {ContrastResiduals, CriticalForwards, InitialHeldout} <= kinds
    assert sum(isinstance(k, ContrastResiduals) for k in together.memo) == 1


def test_one_pass_of_the_contrast_prompts_gives_each_blocks_direction(ctx):
    """Every block's direction from one forward per side equals a forward stopped there."""
    grid = layer_grid(ctx.n_layers, (0.0, 0.5, 1.0))
    c = fresh(ctx)
    for block in grid:
        v, rest = cached_direction(c, block, 3, grid)
        alone, rest_alone = contrast_direction(
            ctx.model, ctx.tokenizer, ctx.prompts, block, n_pairs=3
        )
        assert torch.equal(v, alone) and rest == rest_alone
    assert [k for k in c.memo if isinstance(k, ContrastResiduals)] == [
        ContrastResiduals(3, tuple(grid))
    ]


def test_different_grids_share_no_contrast_pass_and_score_as_alone(ctx):
    """S1 and S2 with different grids each read the contrast prompts themselves (as their
    declared work counts them), and each scores what it scores alone."""
    strategies = [
        get_strategy("s1_belief", n_pairs=3, layer_fracs=(0.5,)),
        get_strategy("s2_noise", n_pairs=3),
    ]
    together = fresh(ctx)
    shared = [s.score_model(together) for s in strategies]
    assert shared == [s.score_model(fresh(ctx)) for s in strategies]
    assert sum(isinstance(k, ContrastResiduals) for k in together.memo) == 2


def test_the_shared_critical_forward_is_a_plain_forward_and_a_cached_one(ctx):
    """Its logits are a plain forward's and its patterns a cached forward's, exactly (the
    hooks keep only the last query of each pattern). Reading the patterns runs the attention
    eagerly, so the plain forward it equals exactly is one with eager attention (its norms stay
    fused: nothing reads their scale); the fused plain forward agrees to float rounding."""
    prompts = critical_prompts(ctx.prompts, 8)
    ids, last = encode(ctx.tokenizer, [s.prompt for s in prompts])
    patterns, logits = last_token_attention(ctx.model, ids, last)
    with torch.no_grad():
        with eager(ctx.model, norms=False):
            plain = last_logits(ctx.model, ids, last).float()
        fused = last_logits(ctx.model, ids, last).float()
        # A cache of everything would read the norms' scales too (their python path).
        _, cache = ctx.model.run_with_cache(ids, names_filter=lambda n: n.endswith("pattern"))
    rows = torch.arange(len(prompts))
    assert torch.equal(logits, plain)
    torch.testing.assert_close(logits, fused, atol=1e-5, rtol=1e-5)
    for layer, got in enumerate(patterns):
        want = cache[hook_name("pattern", layer, ctx.n_layers)][rows, :, last].float()
        assert torch.equal(got, want), layer
    assert not any(h.fwd_hooks for h in ctx.model.hook_dict.values())


@pytest.mark.parametrize("batch_size", [64, 4])
def test_patching_reads_its_clean_answers_from_the_attention_forward(ctx, batch_size):
    cfg = PatchingConfig(n_prompts=8, batch_size=batch_size)
    prompts = critical_prompts(ctx.prompts, cfg.n_prompts)
    c = fresh(ctx)
    shared = _clean_readout(c, prompts, cfg)
    with eager(ctx.model, norms=False):  # the attention forward reads patterns: eager
        alone = answer_readout_batched(ctx.model, ctx.tokenizer, prompts, batch_size=batch_size)
    fused = answer_readout_batched(ctx.model, ctx.tokenizer, prompts, batch_size=batch_size)
    for field in ("p_a", "p_b", "p_error", "mass_ab", "p_misaligned"):
        assert torch.equal(getattr(shared, field), getattr(alone, field)), field
        torch.testing.assert_close(getattr(shared, field), getattr(fused, field), msg=field)
    assert len(critical_forwards(c, cfg.n_prompts, batch_size)) == -(-len(prompts) // batch_size)
    # S6's attention with the same settings finds the forward in the memo: no new entry.
    get_strategy("s6_attention", n_prompts=8, batch_size=batch_size).score_model(c)
    assert sum(isinstance(k, CriticalForwards) for k in c.memo) == 1


def test_every_curve_starts_from_the_shared_first_read(ctx):
    """A curve given the shared first read equals one that reads it itself (adapter, copy)."""
    cfg = LoraSpeedConfig(n_heldout=3, batch_size=2, n_steps=2)
    seed = family_seed(0, ctx.family)
    start = initial_heldout(fresh(ctx), cfg, seed)
    width, n_layers = int(ctx.model.cfg.d_model), ctx.n_layers

    def adapter_run():  # a fresh adapter on the model (B starts at zero)
        ad = LowRankAdapter(
            width,
            width,
            2,
            source=hook_name("ln2_normalized", 0, n_layers),
            target=hook_name("mlp_out", 0, n_layers),
            seed=seed,
        )
        return ctx.model, list(ad.parameters()), ad.hooks()

    def copy_run():  # every weight of a copy
        model = copy.deepcopy(ctx.model)
        return model, list(model.parameters()), ()

    args = {"lr": 1e-3, "n_steps": 2, "batch_size": 2, "n_heldout": 3, "seed": seed}
    for run in (adapter_run, copy_run):
        curves = []
        for given in (None, start):
            model, params, hooks = run()
            curves.append(
                learning_curve(
                    model, ctx.tokenizer, ctx.prompts, params, hooks=hooks, start=given, **args
                )
            )
        assert curves[0] == curves[1], run.__name__
    too_few = ModelContext(ctx.name, ctx.model, ctx.tokenizer, ctx.family, ctx.prompts[:4])
    assert initial_heldout(too_few, cfg, seed) is None
