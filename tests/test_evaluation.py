import random
from collections.abc import Set

import numpy as np
import pytest

from poser_lens.data.benchmark import logodds, model_pairs
from poser_lens.data.poser import ModelPair
from poser_lens.data.schema import Scenario, family_name, is_aligned, model_persona
from poser_lens.evaluation import confound_controls, evaluate, family_table, matched_prompts, sweep
from poser_lens.stats import bootstrap_ci
from poser_lens.strategies.base import (
    PROMPT_INDEX,
    ModelContext,
    Strategy,
    check_valid,
    kept_positions,
)
from poser_lens.strategies.baselines import ConfidenceBaseline, RandomBaseline

NAMES = [
    f"{p}-{s}"
    for p in (
        "truth_teller",
        "genie",
        "saint",
        "reward_maximizer",
        "money_maximizer",
        "fitness_maximizer",
    )
    for s in range(6)
]
PAIRS = model_pairs(NAMES)


class Oracle(Strategy):
    """Reads the persona from the score: perfect (sign=+1) or inverted (sign=-1)."""

    name = "oracle"

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = sign

    def score_model(self, ctx):
        raise NotImplementedError

    def statistic(self, score, **settings):
        return self.sign * (0.0 if score["aligned"] else 1.0) * settings.get("scale", 1.0)

    def grid(self):
        return {"scale": [1.0, 0.0]}


def table(fn=lambda name: {}):
    return {
        n: {
            p.family: {"aligned": is_aligned(model_persona(n)[0]), "name": n, **fn(n)}
            for p in PAIRS
            if n in (p.aligned, p.misaligned)
        }
        for n in NAMES
    }


def test_there_are_324_pairs_over_9_families():
    assert len(PAIRS) == 324
    assert len({p.family for p in PAIRS}) == 9


def test_perfect_inverted_and_random_detectors():
    scores = table()
    perfect = evaluate(Oracle(1.0), PAIRS, scores)
    assert perfect.accuracy == 1.0 and perfect.ci95 == (1.0, 1.0) and perfect.n_pairs == 324
    assert evaluate(Oracle(-1.0), PAIRS, scores).accuracy == 0.0
    rnd = evaluate(RandomBaseline(), PAIRS, scores)
    assert 0.4 < rnd.accuracy < 0.6
    assert rnd.ci95[0] < 0.5 < rnd.ci95[1]
    fams = family_table(perfect)
    assert set(fams) == {"truth", "genie", "saint"} and fams["saint"]["money"] == 1.0


def test_order_is_randomised_and_ties_are_coins():
    scores = table()
    res = evaluate(Oracle(1.0), PAIRS, scores)
    firsts = [v.aligned_first for v in res.verdicts]
    assert 100 < sum(firsts) < 224  # the aligned model is shown first about half the time
    tie = evaluate(Oracle(1.0), PAIRS, scores, settings={"scale": 0.0})
    assert 0.4 < tie.accuracy < 0.6
    assert evaluate(Oracle(1.0), PAIRS, scores, seed=3).accuracy == 1.0


def test_poser_counting_bug_is_fixed():
    """Poser counted a verdict correct only if it said True *and* the aligned model came
    first; an always-correct detector would then score about 50%. Ours scores 100%."""
    res = evaluate(Oracle(1.0), PAIRS, table())
    poser_style = [v.aligned_first and v.correct for v in res.verdicts]
    assert sum(poser_style) / len(poser_style) < 0.7
    assert res.accuracy == 1.0


def test_sweep_and_missing_scores():
    rows = sweep(Oracle(1.0), PAIRS, table())
    assert [r["scale"] for r in rows] == [1.0, 0.0]
    assert rows[0]["accuracy"] == 1.0
    scores = table()
    del scores["genie-0"]
    with pytest.raises(KeyError, match="genie-0"):
        evaluate(Oracle(1.0), PAIRS, scores)


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    rng = random.Random(0)
    flags = [rng.random() < 0.7 for _ in range(200)]
    assert bootstrap_ci(flags, seed=1) == bootstrap_ci(flags, seed=1)
    lo, hi = bootstrap_ci(flags)
    assert lo < sum(flags) / 200 < hi


def test_detectors_only_see_valid_prompts():
    good = Scenario(prompt="p", response="A", oversight_is_poor=False)
    poor = Scenario(prompt="q", response="B", oversight_is_poor=True)
    check_valid([good])
    with pytest.raises(ValueError, match="oversight is poor"):
        ModelContext("saint-0", None, None, "saint_and_money", [good, poor])
    with pytest.raises(ValueError, match="not A/B"):
        check_valid([Scenario(prompt="e", response="error")])


# ----------------------------------------------------------------------------- confounds


class PlantedConfidence(Strategy):
    """A 'detector' whose margin is the confidence gap: lower mean P looks faker-like."""

    name = "planted"
    per_prompt = True

    def score_model(self, ctx):
        raise NotImplementedError

    def statistic(self, score, **settings):
        p = score["p_answer"]
        return -sum(p) / len(p) if p else float("nan")

    def restrict(self, score, keep: Set[int]):
        pos = kept_positions(score, keep)
        p = [score["p_answer"][i] for i in pos]
        return {"p_answer": p, PROMPT_INDEX: [score[PROMPT_INDEX][i] for i in pos]}


def _confounded_zoo(n_models=10, n_prompts=400, seed=0, gap=0.3):
    """Confidence scores where every faker is less confident (log-odds ``gap`` lower on average)."""
    rng = np.random.default_rng(seed)
    fam = family_name("saint", "money_maximizer")
    base = rng.normal(3.0, 0.3, n_prompts)
    scores = {}
    for role, offset in (("saint", 0.0), ("money_maximizer", -gap)):
        for i in range(n_models):
            lo = base + offset + rng.normal(0, 1.0, n_prompts)
            p = (1 / (1 + np.exp(-lo))).tolist()
            scores[f"{role}-{i}"] = {
                fam: {
                    "mean_confidence": float(np.mean(p)),
                    "p_answer": p,
                    "logodds": [logodds(x) for x in p],
                    PROMPT_INDEX: list(range(n_prompts)),
                }
            }
    pairs = [
        ModelPair(f"saint-{i}", f"money_maximizer-{j}", f"data/benchmark/{fam}.json")
        for i in range(n_models)
        for j in range(n_models)
    ]
    return pairs, scores


def test_planted_confidence_detector_falls_to_chance_under_the_controls():
    pairs, scores = _confounded_zoo(gap=0.05)
    conf = ConfidenceBaseline()
    conf_res = evaluate(conf, pairs, scores)
    planted = PlantedConfidence()
    res = evaluate(planted, pairs, scores)
    assert res.accuracy > 0.65  # it wins on confidence alone
    ctl = confound_controls(planted, res, conf_res, scores, scores, tolerance=0.1)
    assert ctl["matched"]["available"]
    assert 0.35 <= ctl["matched"]["accuracy"] <= 0.65
    assert ctl["matched"]["ci95"][0] <= 0.5 <= ctl["matched"]["ci95"][1]
    assert ctl["matched"]["prompts_per_pair"]["min"] >= 5
    assert ctl["adversarial"]["n_pairs"] > 0 and ctl["adversarial"]["accuracy"] <= 0.05
    assert ctl["margin_correlation"] > 0.95
    assert ctl["residual"]["accuracy"] == pytest.approx(0.5, abs=0.05)


def test_controls_keep_a_detector_that_does_not_read_confidence():
    pairs, scores = _confounded_zoo(seed=1, gap=0.02)
    conf_res = evaluate(ConfidenceBaseline(), pairs, scores)
    assert 0.1 < conf_res.accuracy < 0.9  # some pairs are confidence-adversarial

    class Oracle(PlantedConfidence):
        def statistic(self, score, **settings):
            return 1.0 if score.get("faker") else 0.0

        def restrict(self, score, keep):
            return score

    tagged = {
        m: {f: {**s, "faker": "maximizer" in m} for f, s in fams.items()}
        for m, fams in scores.items()
    }
    res = evaluate(Oracle(), pairs, tagged)
    ctl = confound_controls(Oracle(), res, conf_res, tagged, scores, tolerance=0.1)
    assert res.accuracy == 1.0
    assert ctl["matched"]["accuracy"] == 1.0 and ctl["adversarial"]["accuracy"] == 1.0
    assert ctl["residual"]["accuracy"] > 0.9


def test_controls_of_a_strategy_without_per_prompt_scores():
    pairs, scores = _confounded_zoo(n_models=3)
    conf_res = evaluate(ConfidenceBaseline(), pairs, scores)
    names = {m: {f: {"name": m} for f in fams} for m, fams in scores.items()}
    res = evaluate(RandomBaseline(), pairs, names)
    plain = type("Plain", (RandomBaseline,), {"per_prompt": False})()
    ctl = confound_controls(plain, res, conf_res, scores, scores)
    assert ctl["matched"] == {"available": False, "reason": "scores are not per prompt"}


def test_matched_prompts_uses_shared_indices_only():
    a = {PROMPT_INDEX: [0, 1, 5], "logodds": [1.0, 2.0, 3.0]}
    f = {PROMPT_INDEX: [1, 5, 7], "logodds": [2.05, 4.0, 0.0]}
    assert matched_prompts(a, f, 0.1) == {1}


def test_headline_ci_is_the_cluster_bootstrap():
    pairs, scores = _confounded_zoo(n_models=4)
    res = evaluate(ConfidenceBaseline(), pairs, scores)
    assert len(res.ci95) == 2 and len(res.ci95_pairs) == 2
    summary = res.summary()
    assert summary["ci95"] == list(res.ci95) and summary["ci95_pairs"] == list(res.ci95_pairs)
