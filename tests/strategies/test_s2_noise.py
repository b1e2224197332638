"""Strategy 2 (noise): scores, verdicts, the packed variant readout and the label-free choice."""

import json
import math

import pytest
import torch

from poser_lens.data.poser import ModelPair, load_benchmark
from poser_lens.data.schema import Scenario
from poser_lens.evaluation import evaluate
from poser_lens.hooks import AddNoise
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.models.zoo import load_zoo_model
from poser_lens.strategies import get_strategy
from poser_lens.strategies.base import ModelContext
from poser_lens.strategies.common import answer_readout_batched
from poser_lens.strategies.s2_noise import NoiseStrategy
from poser_lens.strategies.variants import choose_coeff, variant_readout

FAMILY = "truth_and_reward"


def small_scores(zoo, strategy):
    prompts = load_benchmark(zoo / "poser")[FAMILY]
    out = {}
    for name in ("truth_teller-0", "reward_maximizer-0"):
        model, tok = load_zoo_model(zoo, name)
        out[name] = {FAMILY: strategy.score_model(ModelContext(name, model, tok, FAMILY, prompts))}
    return out


def test_small_zoo_pair(small_zoo):
    s = get_strategy("s2_noise", n_pairs=4, n_draws=1, coeffs=(0.0, 1.0, 4.0))
    scores = small_scores(small_zoo, s)
    score = scores["reward_maximizer-0"][FAMILY]
    assert json.loads(json.dumps(score)) == score
    assert set(score["layers"]) == {"0", "1"} and score["kinds"] == ["uniform", "gaussian"]
    assert len(score["layers"]["1"]["gaussian"]["p_misaligned"]) == 1  # one draw
    assert math.isfinite(s.margin(score, scores["truth_teller-0"][FAMILY]))
    res = evaluate(s, [ModelPair("truth_teller-0", "reward_maximizer-0", FAMILY)], scores)
    assert res.n_pairs == 1 and res.settings["coeff"] == "auto"
    # Seeded: the same draws give the same score.
    assert small_scores(small_zoo, s)["reward_maximizer-0"][FAMILY] == score


@pytest.fixture(scope="module")
def tiny():
    prompts = [
        "<<prompt>> x y z <</prompt>>",
        "<<prompt>> y <</prompt>>",
        "<<prompt>> z x <</prompt>>",
    ]
    tok = build_tokenizer([*prompts, "A B error"])
    cfg = TinyConfig(n_layers=3, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=24)
    model = wrap(build_native(cfg, len(tok), seed=3), tok)
    scenarios = [Scenario(prompt=p, response=r) for p, r in zip(prompts, "ABA", strict=True)]
    return model, tok, scenarios


def test_packed_equals_one_forward_per_variant(tiny):
    """All variants in one sequence equal the plain hooked forward, at every layer."""
    model, tok, scenarios = tiny
    torch.manual_seed(0)
    deltas = {L: 3 * torch.randn(5 + L, 16) for L in range(3)}
    packed = variant_readout(model, tok, scenarios, deltas, batch_size=2)
    stacked = variant_readout(model, tok, scenarios, deltas, packed=False)
    for L in range(3):
        for a, b in zip(packed[L], stacked[L], strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # Packed copies are chunked when they do not fit in n_ctx (here 24 tokens).
    many = variant_readout(model, tok, scenarios, {0: 3 * torch.randn(40, 16)})
    assert many[0][0].shape == (3, 40)


def test_noise_matches_addnoise_hook(tiny):
    """The strategy adds +coeff * norm * unit, the AddNoise hook at resid_post, last token."""
    model, tok, scenarios = tiny
    hook = AddNoise(d=16, kind="uniform", norm=2.0, coeff=3.0, seed=7)
    ref = answer_readout_batched(model, tok, scenarios, hooks=lambda last: [
        ("blocks.1.hook_resid_post", AddNoise(**{**hook.__dict__, "last": last}))])  # fmt: skip
    delta = (hook.coeff * hook.norm * hook.unit)[None]
    p, m = variant_readout(model, tok, scenarios, {1: delta})[1]
    torch.testing.assert_close(p[:, 0], ref.p_misaligned, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(m[:, 0], ref.mass_ab, atol=1e-5, rtol=1e-4)


def fake(rise_at, mass, n_layers=2):
    curve = [[0.1 + r for r in rise_at]]
    block = {k: {"p_misaligned": curve, "mass_ab": [mass]} for k in ("uniform", "gaussian")}
    return {"n_layers": n_layers, "coeffs": [0.0, 1.0, 2.0], "kinds": ["uniform", "gaussian"],
            "layers": {"0": block, "1": block}}  # fmt: skip


def test_faker_is_larger_rise_at_label_free_coeff():
    s = NoiseStrategy()
    # Mass collapses at coefficient 2, so the label-free choice is 1, where b rises more.
    a, b = fake([0, 0.1, 0.9], [1, 1, 0.2]), fake([0, 0.3, 0.3], [1, 1, 0.2])
    assert s.margin(a, b) < 0 and s.margin(b, a) > 0
    assert s.margin(a, b, coeff=2.0) > 0
    assert s.margin(a, a) == 0


def test_choose_coeff_is_label_free_and_stops_at_first_drop():
    assert choose_coeff([0, 1, 2, 3], [[1, 1, 1, 1]], 0.9) == 3
    assert choose_coeff([0, 1, 2, 3], [[1, 0.5, 1, 1]], 0.9) == 0
    # Symmetric in the two models: no label enters.
    assert choose_coeff([0, 1, 2], [[1, 1, 0.5], [1, 0.9, 0.9]], 0.8) == choose_coeff(
        [0, 1, 2], [[1, 0.9, 0.9], [1, 1, 0.5]], 0.8)  # fmt: skip


def test_grid_points_are_in_the_score():
    s = NoiseStrategy(coeffs=(0.0, 1.0, 2.0))
    score = fake([0, 0.1, 0.2], [1, 1, 1])
    for frac in s.grid()["layer_frac"]:
        for coeff in s.grid()["coeff"]:
            assert math.isfinite(s.margin(score, score, layer_frac=frac, coeff=coeff))
