import random

import pytest

from poser_lens.data.benchmark import model_pairs
from poser_lens.data.schema import Scenario, is_aligned, model_persona
from poser_lens.evaluation import bootstrap_ci, evaluate, family_table, sweep
from poser_lens.strategies.base import ModelContext, Strategy, check_valid
from poser_lens.strategies.baselines import RandomBaseline

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
