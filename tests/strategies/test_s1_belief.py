"""Strategy 1 (steering along the oversight direction): scores, verdicts, signs."""

import json
import math

import numpy as np
import torch
from s4s6_support import check_restrict

from poser_lens.data.poser import ModelPair, load_benchmark
from poser_lens.evaluation import evaluate
from poser_lens.models.zoo import load_zoo_model
from poser_lens.strategies import get_strategy
from poser_lens.strategies.base import PROMPT_INDEX, ModelContext
from poser_lens.strategies.common import contrast_direction
from poser_lens.strategies.s1_belief import BeliefStrategy

FAMILY = "truth_and_reward"


def test_small_zoo_pair(small_zoo):
    s = get_strategy("s1_belief", n_pairs=4, coeffs=(0.0, 1.0, 2.0))
    prompts = load_benchmark(small_zoo / "poser")[FAMILY]
    scores = {}
    for name in ("truth_teller-0", "reward_maximizer-0"):
        model, tok = load_zoo_model(small_zoo, name)
        ctx = ModelContext(name, model, tok, FAMILY, prompts)
        scores[name] = {FAMILY: s.score_model(ctx)}
    score = scores["reward_maximizer-0"][FAMILY]
    assert json.loads(json.dumps(score)) == score
    # Each evaluation prompt once: the valid set minus the contrast-pair sources.
    _, rest = contrast_direction(model, tok, prompts, 1, n_pairs=4)
    assert score["n_prompts"] == min(len(rest), 100) and len(set(map(id, rest))) == len(rest)
    # Coefficient 0 is the clean run, whatever the sign.
    block = score["layers"]["1"]
    assert block["add"]["p_misaligned"][0][0] == block["subtract"]["p_misaligned"][0][0]
    assert math.isfinite(s.margin(score, scores["truth_teller-0"][FAMILY]))
    res = evaluate(s, [ModelPair("truth_teller-0", "reward_maximizer-0", FAMILY)], scores)
    assert res.n_pairs == 1 and res.settings == s.headline
    # Per prompt: the evaluation prompts (not the pair sources), P(misaligned) per coefficient
    # at the headline layer and sign, averaging to the stored curve.
    idx = score[PROMPT_INDEX]
    assert all(prompts[i] is r for i, r in zip(idx, rest[:100], strict=True))
    bp = score["by_prompt"]
    assert (bp["layer"], bp["sign"]) == (1, "subtract")
    assert np.shape(bp["p_misaligned"]) == (len(idx), 3)
    want = score["layers"]["1"]["subtract"]["p_misaligned"][0]
    np.testing.assert_allclose(np.mean(bp["p_misaligned"], 0), want, rtol=1e-5, atol=1e-6)
    a, b = score, scores["truth_teller-0"][FAMILY]
    check_restrict(s, a, b, len(prompts), points=({}, {"coeff": 1.0}), rel=1e-5, abs_tol=1e-7)


def test_subtract_moves_against_the_direction(small_zoo, monkeypatch):
    """``subtract`` adds -coeff * v: checked by handing the strategy a known direction."""
    import poser_lens.strategies.steering.sweep as sweep
    from poser_lens.strategies.steering.engine import VariantReadout

    seen = {}

    def fake_readout(model, tok, scenarios, deltas, **kw):
        seen.update(deltas)
        p, d = len(scenarios), {L: len(d) for L, d in deltas.items()}
        return {
            L: VariantReadout(torch.zeros(p, n), torch.ones(p, n), torch.zeros(p, n, 4))
            for L, n in d.items()
        }

    v = torch.arange(4.0)
    monkeypatch.setattr(sweep, "cached_direction", lambda ctx, layer, n, grid=(): (v, ctx.prompts))
    monkeypatch.setattr(sweep, "variant_readout", fake_readout)
    prompts = load_benchmark(small_zoo / "poser")[FAMILY]
    ctx = ModelContext(
        "m-0", type("M", (), {"cfg": type("C", (), {"n_layers": 2})})(), None, FAMILY, prompts
    )
    BeliefStrategy(coeffs=(0.0, 2.0), layer_fracs=()).score_model(ctx)
    torch.testing.assert_close(seen[1], torch.stack([0 * v, 2 * v, 0 * v, -2 * v]))


def test_faker_is_larger_rise_with_headline_sign():
    s = BeliefStrategy(coeffs=(0.0, 2.0))

    def fake(add, sub):
        return {
            "n_layers": 2,
            "coeffs": [0.0, 2.0],
            "signs": ["add", "subtract"],
            "layers": {
                "1": {
                    "add": {"p_misaligned": [[0.1, 0.1 + add]]},
                    "subtract": {"p_misaligned": [[0.1, 0.1 + sub]]},
                }
            },
        }

    faker, aligned = fake(0.0, 0.5), fake(0.6, 0.1)
    assert s.headline == {"layer_frac": 15 / 40, "sign": "subtract", "coeff": 2.0}
    assert s.margin(faker, aligned) > 0
    assert s.margin(faker, aligned, sign="add") < 0


def test_too_few_prompts_for_pairs_and_evaluation_is_a_clear_error(small_zoo):
    """All valid prompts used as contrast pairs leaves nothing to score: say so, don't crash."""
    import pytest

    prompts = [
        s
        for s in load_benchmark(small_zoo / "poser")[FAMILY]
        if s.is_typed and s.critical_facts and (s.complexity_level or 0) >= 1
    ]
    assert prompts
    model, tok = load_zoo_model(small_zoo, "truth_teller-0")
    with pytest.raises(ValueError, match="none left to evaluate"):
        contrast_direction(model, tok, prompts, 1, n_pairs=len(prompts))
