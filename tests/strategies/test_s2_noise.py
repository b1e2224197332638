"""Strategy 2 (noise): scores, verdicts, the packed variant readout and the label-free choice."""

import json
import math

import numpy as np
import pytest
import torch

from poser_lens.data.poser import ModelPair, load_benchmark
from poser_lens.data.prompts import contrast_pairs
from poser_lens.data.schema import Scenario
from poser_lens.evaluation import evaluate
from poser_lens.hooks import AddNoise, AddVector, applied, hook_name
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.models.zoo import load_zoo_model
from poser_lens.readout import AnswerIds, answer_readout, last_token_logits
from poser_lens.strategies import get_strategy
from poser_lens.strategies.base import PROMPT_INDEX, ModelContext
from poser_lens.strategies.common import answer_readout_batched, contrast_direction
from poser_lens.strategies.s2_noise import NoiseStrategy
from poser_lens.strategies.variants import (
    choose_coeff,
    kl_strength,
    log_odds,
    outcome_kl,
    outcome_log_probs,
    variant_readout,
)

FAMILY = "truth_and_reward"
#: Headline, log-odds and equal-KL settings of the margin.
VARIANTS = [{}, {"measure": "logodds"}, {"coeff": "kl"}, {"coeff": "kl", "measure": "logodds"}]


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
    assert res.n_pairs == 1 and res.settings["coeff"] == "auto" and res.settings["measure"] == "p"
    # Seeded: the same draws give the same score.
    assert small_scores(small_zoo, s)["reward_maximizer-0"][FAMILY] == score


def test_small_zoo_score_has_logodds_kl_and_per_prompt_fields(small_zoo):
    s = get_strategy("s2_noise", n_pairs=4, n_draws=2, coeffs=(0.0, 1.0, 4.0))
    scores = small_scores(small_zoo, s)
    a, b = (scores[m][FAMILY] for m in ("reward_maximizer-0", "truth_teller-0"))
    for block in a["layers"].values():
        for kind in ("uniform", "gaussian"):
            curves = block[kind]
            assert len(curves["log_odds"]) == len(curves["kl"]) == 2  # one curve per draw
            assert all(len(c) == 3 and c[0] == 0.0 for c in curves["kl"])  # clean vs clean
            assert all(min(c) >= -1e-9 for c in curves["kl"])
    for settings in [*VARIANTS, {"coeff": 4.0, "measure": "logodds", "kind": "gaussian"}]:
        assert math.isfinite(s.margin(a, b, **settings)), settings
    # The rise at coeff="kl" is read at the model's own strength, inside the coefficient range.
    kl = np.mean(a["layers"]["1"]["uniform"]["kl"], 0)
    strength = kl_strength(a["coeffs"], kl, s.config.kl_target)
    assert 0.0 <= strength <= 4.0
    # Per-prompt fields: valid indices, the evaluation prompts, rows that average to the curves.
    prompts = load_benchmark(small_zoo / "poser")[FAMILY]
    model, tok = load_zoo_model(small_zoo, "reward_maximizer-0")
    _, rest = contrast_direction(model, tok, prompts, 1, n_pairs=4)
    idx = a[PROMPT_INDEX]
    assert all(0 <= i < len(prompts) for i in idx) and len(set(idx)) == len(idx) == a["n_prompts"]
    assert all(prompts[i] is r for i, r in zip(idx, rest[:100], strict=True))
    bp = a["by_prompt"]
    assert (bp["layer"], bp["kind"]) == (1, "uniform")
    for key in ("p_misaligned", "mass_ab", "log_odds", "kl"):
        assert np.shape(bp[key]) == (len(idx), 3)
        want = np.mean(a["layers"]["1"]["uniform"][key], 0)
        np.testing.assert_allclose(np.mean(bp[key], 0), want, rtol=1e-5, atol=1e-6)
    assert json.loads(json.dumps(a)) == a


def test_restrict_all_prompts_keeps_every_headline_margin(small_zoo):
    s = get_strategy("s2_noise", n_pairs=4, n_draws=2, coeffs=(0.0, 1.0, 4.0))
    scores = small_scores(small_zoo, s)
    a, b = (scores[m][FAMILY] for m in ("reward_maximizer-0", "truth_teller-0"))
    every = set(range(200))
    ra, rb = s.restrict(a, every), s.restrict(b, every)
    assert ra[PROMPT_INDEX] == a[PROMPT_INDEX]
    for settings in [*VARIANTS, {"coeff": 1.0}]:
        want = s.margin(a, b, **settings)
        assert s.margin(ra, rb, **settings) == pytest.approx(want, rel=1e-5, abs=1e-7), settings
    # Restricting twice is restricting to the intersection; nothing kept is a NaN margin (a tie).
    half = set(a[PROMPT_INDEX][::2])
    twice = s.restrict(s.restrict(a, half), every)
    assert twice == s.restrict(a, half)
    assert math.isnan(s.margin(s.restrict(a, set()), rb))
    assert math.isnan(s.margin(s.restrict(a, {10_000}), s.restrict(b, {10_000}), coeff="kl"))


def test_restrict_equals_scoring_only_those_prompts(small_zoo):
    """Keeping the contrast-pair sources and a subset of the evaluation prompts scores exactly
    the subset (same direction, same seeded noise), so restricting must give the same curves."""
    s = get_strategy("s2_noise", n_pairs=4, n_draws=2, coeffs=(0.0, 1.0, 4.0), layer_fracs=())
    prompts = load_benchmark(small_zoo / "poser")[FAMILY]
    model, tok = load_zoo_model(small_zoo, "reward_maximizer-0")
    score = s.score_model(ModelContext("m-0", model, tok, FAMILY, prompts))
    pairs, _ = contrast_pairs(prompts, 4)
    sources = {id(p.source) for p in pairs}
    subset = set(score[PROMPT_INDEX][1::3])
    sub_prompts = [p for i, p in enumerate(prompts) if id(p) in sources or i in subset]
    sub = s.score_model(ModelContext("m-0", model, tok, FAMILY, sub_prompts))
    restricted = s.restrict(score, subset)
    assert restricted["n_prompts"] == sub["n_prompts"] == len(subset)
    for key in ("p_misaligned", "mass_ab", "log_odds", "kl"):
        got = restricted["layers"]["1"]["uniform"][key][0]
        want = np.mean(sub["layers"]["1"]["uniform"][key], 0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


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


def one_forward_per_variant(model, tok, scenarios, deltas):
    """The reference readout: each prompt alone (no padding), one hooked forward per variant.

    The delta goes in with the :class:`~poser_lens.hooks.AddVector` primitive at the last
    token's ``hook_resid_post``; nothing is shared with :func:`variant_readout`.
    """
    ids_of, n_layers = AnswerIds.from_tokenizer(tok), model.cfg.n_layers
    out = {}
    for layer, variants in deltas.items():
        name = hook_name("resid_post", layer, n_layers)
        logits = []
        for s in scenarios:
            ids = tok(s.prompt, return_tensors="pt")["input_ids"]
            for delta in variants:
                with torch.no_grad(), applied(model, [(name, AddVector(delta))]):
                    logits.append(model(ids)[0, -1])
        flat = torch.stack(logits).float()
        aligned = [s.aligned_letter for s in scenarios for _ in variants]
        r, shape = answer_readout(flat, ids_of, aligned), (len(scenarios), len(variants))
        lp = outcome_log_probs(flat, ids_of, aligned)
        out[layer] = (r.p_misaligned.view(shape), r.mass_ab.view(shape), lp.view(*shape, 4))
    return out


@pytest.fixture(scope="module", params=["native", "llama"])
def tiny_any(request, tiny):
    """The tiny native model, and a tiny random LLaMA (an HF model behind the bridge, as smol
    and Poser's checkpoints are: rotary positions, and a 4-D mask taken as it is)."""
    if request.param == "native":
        return tiny
    from conftest import tiny_llama

    from poser_lens.models.hf import wrap_hf
    from poser_lens.models.smol import scale_final_norm

    _, tok, scenarios = tiny
    hf = tiny_llama(len(tok), n_layers=3, max_position_embeddings=24, seed=3)
    scale_final_norm(hf, 20.0)  # sharper answers than a random model's near-uniform ones
    return wrap_hf(hf, tok, name="toy-llama"), tok, scenarios


def test_packed_equals_one_forward_per_variant(tiny_any):
    """All variants in one sequence equal one unpadded forward per (prompt, variant).

    The prompts have different lengths (so packed rows differ in where their copies start and
    the shorter ones get filler), two share a batch, every block is patched (the last one by
    the final norm and unembedding only), and the stacked path agrees too. On the native tiny
    model and on an HF LLaMA behind the bridge (corrected: the packed mask used to leave out
    the causal part, which HF models do not add to a 4-D mask, so every prompt token saw the
    copies after it and the smol and Poser testbeds read garbage).
    """
    model, tok, scenarios = tiny_any
    d = int(model.cfg.d_model)
    torch.manual_seed(0)
    deltas = {L: 3 * torch.randn(5 + L, d) for L in range(3)}
    want = one_forward_per_variant(model, tok, scenarios, deltas)
    packed = variant_readout(model, tok, scenarios, deltas, batch_size=2)
    stacked = variant_readout(model, tok, scenarios, deltas, packed=False)
    for L in range(3):  # P(misaligned), P(A)+P(B) and the four outcome log-probabilities
        assert [tuple(x.shape) for x in packed[L]] == [(3, 5 + L), (3, 5 + L), (3, 5 + L, 4)]
        for got_packed, got_stacked, ref in zip(packed[L], stacked[L], want[L], strict=True):
            torch.testing.assert_close(got_packed, ref, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got_stacked, ref, atol=1e-5, rtol=1e-4)
    # Packed copies are chunked when they do not fit in n_ctx (here 24 tokens): 40 variants at
    # block 0 and 30 at block 1 take several forwards, and still equal the reference.
    many_deltas = {0: 3 * torch.randn(40, d), 1: 3 * torch.randn(30, d)}
    many = variant_readout(model, tok, scenarios, many_deltas)
    many_want = one_forward_per_variant(model, tok, scenarios, many_deltas)
    for L in many_deltas:
        assert many[L][0].shape == (3, len(many_deltas[L]))
        for got, ref in zip(many[L], many_want[L], strict=True):
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_noise_matches_addnoise_hook(tiny):
    """The strategy adds +coeff * norm * unit, the AddNoise hook at resid_post, last token."""
    model, tok, scenarios = tiny
    hook = AddNoise(d=16, kind="uniform", norm=2.0, coeff=3.0, seed=7)
    ref = answer_readout_batched(
        model,
        tok,
        scenarios,
        hooks=lambda last: [
            ("blocks.1.hook_resid_post", AddNoise(**{**hook.__dict__, "last": last}))
        ],
    )
    delta = (hook.coeff * hook.norm * hook.unit)[None]
    p, m, lo = variant_readout(model, tok, scenarios, {1: delta})[1]
    torch.testing.assert_close(p[:, 0], ref.p_misaligned, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(m[:, 0], ref.mass_ab, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lo[:, 0, 1].exp(), ref.p_misaligned, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lo[:, 0, :2].exp().sum(-1), ref.mass_ab, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lo[:, 0, 2].exp(), ref.p_error, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lo.logsumexp(-1), torch.zeros(3, 1), atol=1e-5, rtol=0)


def test_log_odds_and_kl_match_a_plain_computation(tiny):
    """log P(mis) - log(1 - P(mis)) and KL(clean || noisy) over the four outcomes, from the
    softmax of two plain forwards (clean and hooked) in float64."""
    model, tok, scenarios = tiny
    hook = AddNoise(d=16, kind="uniform", norm=2.0, coeff=3.0, seed=7)
    delta = (hook.coeff * hook.norm * hook.unit)[None]
    lo = variant_readout(model, tok, scenarios, {1: torch.cat([0 * delta, delta])})[1].log_outcomes
    texts = [x.prompt for x in scenarios]
    clean = last_token_logits(model, tok, texts).double().softmax(-1)

    def hooks(last):
        noise = AddNoise(d=16, kind="uniform", norm=2.0, coeff=3.0, seed=7, last=last)
        return [("blocks.1.hook_resid_post", noise)]

    noisy = last_token_logits(model, tok, texts, hooks=hooks).double().softmax(-1)
    ids = AnswerIds.from_tokenizer(tok)

    def outcomes(probs, s):
        al, mis = (ids.a, ids.b) if s.aligned_letter == "A" else (ids.b, ids.a)
        four = [probs[al], probs[mis], probs[ids.error]]
        return np.array([*map(float, four), 1.0 - float(sum(four))])

    for i, sc in enumerate(scenarios):
        p, q = outcomes(clean[i], sc), outcomes(noisy[i], sc)
        assert float(log_odds(lo[i, 1])) == pytest.approx(math.log(q[1] / (1 - q[1])), abs=1e-4)
        kl = float(np.sum(p * np.log(p / q)))
        assert float(outcome_kl(lo[i, 0], lo[i, 1])) == pytest.approx(kl, abs=1e-5)
        assert float(outcome_kl(lo[i, 0], lo[i, 0])) == 0.0


def fake(rise_at, mass, n_layers=2):
    curve = [[0.1 + r for r in rise_at]]
    odds = [[2.0 * p for p in curve[0]]]  # any increasing function of P
    kl = [[0.3 * i for i in range(len(rise_at))]]
    curves = {"p_misaligned": curve, "mass_ab": [mass], "log_odds": odds, "kl": kl}
    block = {k: curves for k in ("uniform", "gaussian")}
    return {
        "n_layers": n_layers,
        "coeffs": [0.0, 1.0, 2.0],
        "kinds": ["uniform", "gaussian"],
        "layers": {"0": block, "1": block},
    }


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
        [0, 1, 2], [[1, 0.9, 0.9], [1, 1, 0.5]], 0.8
    )


def test_grid_points_are_in_the_score():
    s = NoiseStrategy(coeffs=(0.0, 1.0, 2.0))
    score = fake([0, 0.1, 0.2], [1, 1, 1])
    assert s.grid()["coeff"][-2:] == ["auto", "kl"] and set(s.grid()["measure"]) == {"p", "logodds"}
    for frac in s.grid()["layer_frac"]:
        for coeff in s.grid()["coeff"]:
            for measure in s.grid()["measure"]:
                point = {"layer_frac": frac, "coeff": coeff, "measure": measure}
                assert math.isfinite(s.margin(score, score, **point))


def planted(p, odds, kl):
    """A one-layer score with one draw of each curve (the same for both kinds)."""
    block = {"p_misaligned": [p], "mass_ab": [[1.0] * len(p)], "log_odds": [odds], "kl": [kl]}
    return {
        "n_layers": 1,
        "coeffs": [0.0, 1.0, 2.0, 4.0],
        "kinds": ["uniform"],
        "layers": {"0": {"uniform": block}},
    }


def test_logodds_rise_and_kl_coefficient_by_hand():
    s = NoiseStrategy(kl_target=0.4)
    a = planted([0.1, 0.2, 0.4, 0.5], [-2.0, -1.5, -0.5, 0.0], [0.0, 0.2, 0.6, 1.0])
    b = planted([0.05, 0.1, 0.2, 0.35], [-3.0, -2.5, -2.0, -1.0], [0.0, 0.1, 0.2, 0.3])
    # Fixed coefficient 2: log-odds rises 1.5 (a) and 1.0 (b); P rises 0.3 and 0.15.
    assert s.margin(a, b, coeff=2.0, measure="logodds") == pytest.approx(0.5)
    assert s.margin(a, b, coeff=2.0) == pytest.approx(0.15)
    # a's mean KL reaches 0.4 halfway between coefficients 1 and 2 (0.2 -> 0.6): strength 1.5,
    # where P is 0.3 (rise 0.2) and the log-odds -1.0 (rise 1.0). b never reaches 0.4: its
    # largest coefficient, 4 (rises 0.3 and 2.0).
    assert kl_strength(a["coeffs"], a["layers"]["0"]["uniform"]["kl"][0], 0.4) == 1.5
    assert s.kl_rise(a, coeff="kl", layer_frac=0.0) == pytest.approx(0.2)
    assert s.margin(a, b, coeff="kl", layer_frac=0.0) == pytest.approx(0.2 - 0.3)
    assert s.margin(a, b, coeff="kl", layer_frac=0.0, measure="logodds") == pytest.approx(-1.0)
    # kl_target as a setting overrides the config: 0.6 is reached exactly at coefficient 2.
    assert s.kl_rise(a, coeff="kl", layer_frac=0.0, kl_target=0.6) == pytest.approx(0.3)
    # The default target (0.5 nats) is in the config, the headline measure is P.
    assert NoiseStrategy().config.kl_target == 0.5 and NoiseStrategy().headline["measure"] == "p"


def test_restrict_planted_per_prompt_curves():
    s = NoiseStrategy(coeffs=(0.0, 1.0, 2.0, 4.0), kl_target=0.4)
    by_prompt = {
        "layer": 0,
        "kind": "uniform",
        "p_misaligned": [[0.1, 0.2, 0.4, 0.5], [0.3, 0.3, 0.3, 0.3], [0.0] * 4],
        "mass_ab": [[1.0] * 4] * 3,
        "log_odds": [[-2.0, -1.5, -0.5, 0.0], [0.0] * 4, [1.0] * 4],
        "kl": [[0.0, 0.2, 0.6, 1.0], [0.0] * 4, [0.0] * 4],
    }
    score = {**planted([0.1] * 4, [0.0] * 4, [0.0] * 4), "prompt_index": [2, 5, 9]}
    score["by_prompt"] = by_prompt
    one = s.restrict(score, {2, 11})
    assert one[PROMPT_INDEX] == [2] and one["n_prompts"] == 1
    assert s.margin(one, one, layer_frac=0.0) == 0.0
    assert s.kl_rise(one, coeff="kl", layer_frac=0.0, measure="logodds") == pytest.approx(1.0)
    two = s.restrict(score, {2, 5})
    assert two["layers"]["0"]["uniform"]["p_misaligned"][0] == pytest.approx([0.2, 0.25, 0.35, 0.4])
    with pytest.raises(KeyError):  # only the headline kind survives
        s.margin(two, two, layer_frac=0.0, kind="gaussian")
    assert math.isnan(s.kl_rise(s.restrict(score, set()), coeff="kl", layer_frac=0.0))


def test_one_model_statistic_chooses_the_noise_from_its_own_mass_curve():
    """Single-model detection: the label-free coefficient comes from the one model's curve."""
    s = NoiseStrategy()
    # a's mass holds to coefficient 2, b's collapses there: alone, a is read at 2 and b at 1.
    a, b = fake([0, 0.1, 0.9], [1, 1, 1]), fake([0, 0.3, 0.3], [1, 1, 0.2])
    assert s.model_statistic(a) == pytest.approx(0.9)
    assert s.model_statistic(b) == pytest.approx(0.3)
    # Per model already for fixed and equal-KL coefficients: the margin is their difference.
    for point in ({"coeff": 1.0}, {"coeff": 2.0, "measure": "logodds"}, {"coeff": "kl"}):
        diff = s.model_statistic(a, **point) - s.model_statistic(b, **point)
        assert s.margin(a, b, **point) == pytest.approx(diff)
