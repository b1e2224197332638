"""Single-model detection: AUROC over models, recall at a fixed rate, controls, availability."""

import math
import random

import numpy as np
import pytest

from poser_lens.data.benchmark import model_pairs
from poser_lens.data.schema import ALIGNED_PERSONAS, FAKER_PERSONAS, is_aligned, model_persona
from poser_lens.evaluation import evaluate, model_scores, single_model
from poser_lens.stats import auroc, recall_at_fpr, residualise, roc_points, two_group_bootstrap_ci
from poser_lens.strategies.base import Strategy
from poser_lens.strategies.baselines import ConfidenceBaseline, RandomBaseline
from poser_lens.strategies.ensemble import EnsembleStrategy
from poser_lens.strategies.s6_attentiveness import CounterfactualStrategy

NAMES = [f"{p}-{s}" for p in (*ALIGNED_PERSONAS, *FAKER_PERSONAS) for s in range(6)]
PAIRS = model_pairs(NAMES)


class Stat(Strategy):
    """Reads a per-(model, family) value ``x`` from the score."""

    name = "stat"

    def score_model(self, ctx):
        raise NotImplementedError

    def statistic(self, score, **settings):
        return score["x"]


def table(value):
    """model -> family -> {"x": value(model, family), "mean_confidence", "name"}."""
    return {
        n: {
            p.family: {
                "x": value(n, p.family),
                "name": n,
                "family": p.family,
                "mean_confidence": 0.9,
            }
            for p in PAIRS
            if n in (p.aligned, p.misaligned)
        }
        for n in NAMES
    }


def faker(name):
    return not is_aligned(model_persona(name)[0])


# ----------------------------------------------------------------------------- stats


def test_auroc_counts_ties_as_half_and_drops_nan():
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5
    assert auroc([0.0, math.nan], [1.0]) == 1.0
    assert math.isnan(auroc([], [1.0]))


def test_roc_points_run_from_origin_to_one_and_their_area_is_the_auroc():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(size=18).round(1), rng.normal(0.7, size=18).round(1)  # with ties
    fpr, tpr = roc_points(neg, pos)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(neg, pos))


@pytest.mark.parametrize(
    ("n", "fpr", "rank"), [(18, 0.05, 1), (18, 0.2, 3), (99, 0.01, 1), (3, 0.9, 3)]
)
def test_recall_threshold_is_the_kth_largest_aligned_score(n, fpr, rank):
    neg = list(range(n))
    out = recall_at_fpr(neg, [n - rank + 0.5, n + 1.0], fpr)
    assert out["rank"] == rank and out["threshold"] == n - rank
    assert out["expected_fpr"] == pytest.approx(rank / (n + 1))
    assert out["recall"] == 1.0  # both lie above the k-th largest


def test_expected_fpr_holds_for_new_aligned_models():
    """A fresh exchangeable negative lies above the threshold at rate k / (n + 1)."""
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(4000):
        neg = rng.normal(size=18)
        t = recall_at_fpr(neg, [0.0], 0.05)["threshold"]
        hits.append(rng.normal() > t)
    assert np.mean(hits) == pytest.approx(1 / 19, abs=0.01)


def test_two_group_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(2)
    neg, pos = rng.normal(size=18), rng.normal(1.0, size=18)
    a = two_group_bootstrap_ci(auroc, neg, pos, n_boot=300, seed=3)
    assert a == two_group_bootstrap_ci(auroc, neg, pos, n_boot=300, seed=3)
    assert a[0] <= auroc(neg, pos) <= a[1]


def test_residualise_removes_what_the_control_explains():
    assert np.allclose(residualise([3.0, 1.0, 2.0], [30.0, 10.0, 20.0]), 0.0)
    assert np.isnan(residualise([1.0, 2.0], [1.0, 2.0])).all()  # too few models


# ----------------------------------------------------------------------------- single_model


def test_a_perfect_and_an_inverted_detector():
    perfect = single_model(Stat(), PAIRS, table(lambda n, f: float(faker(n))), n_boot=200)
    assert perfect.available and perfect.auroc == 1.0 and perfect.ci95 == (1.0, 1.0)
    assert len(perfect.aligned) == len(perfect.fakers) == 18
    assert perfect.recall["recall"] == 1.0
    graded = single_model(
        Stat(), PAIRS, table(lambda n, f: float(faker(n)) + 0.01 * int(n[-1])), n_boot=200
    )
    assert graded.recall["recall"] == 1.0
    assert graded.recall["expected_fpr"] == pytest.approx(1 / 19)
    inverted = single_model(Stat(), PAIRS, table(lambda n, f: -float(faker(n))), n_boot=200)
    assert inverted.auroc == 0.0 and inverted.recall["recall"] == 0.0
    assert set(perfect.per_family) == {p.family for p in PAIRS}
    assert all(
        v["auroc"] == 1.0 and v["n_aligned"] == v["n_fakers"] == 6
        for v in perfect.per_family.values()
    )


def test_per_family_auroc_is_the_expected_pair_accuracy():
    """Within a family the AUROC is the Mann-Whitney statistic of the pair margins' terms."""
    rng = random.Random(0)
    values = {
        (n, f): rng.gauss(0.3 * faker(n), 1.0) for n in NAMES for f in {p.family for p in PAIRS}
    }
    scores = table(lambda n, f: values[(n, f)])
    single = single_model(Stat(), PAIRS, scores, n_boot=50)
    pairs = evaluate(Stat(), PAIRS, scores, n_boot=50)
    for fam, row in pairs.per_family.items():  # no ties: the coin never decides
        assert single.per_family[fam]["auroc"] == pytest.approx(row["accuracy"])


def test_pooled_score_is_the_mean_over_a_models_families():
    scores = table(lambda n, f: float(len(f)))
    per = model_scores(Stat(), PAIRS, scores)
    res = single_model(Stat(), PAIRS, scores, n_boot=20)
    for name, value in {**res.aligned, **res.fakers}.items():
        assert value == pytest.approx(np.mean(list(per[name].values())))
        assert len(per[name]) == 3


def test_a_detector_that_only_tracks_confidence_is_caught():
    conf = {n: 0.1 * faker(n) + 0.001 * int(n[-1]) for n in NAMES}  # faker-like = less confident
    res = single_model(
        Stat(), PAIRS, table(lambda n, f: 5 * conf[n] + 1), confidence=conf, n_boot=100
    )
    assert res.auroc == 1.0
    assert res.confound["confidence_correlation"] == pytest.approx(1.0)
    assert res.confound["residual_auroc"] == 0.5
    rng = random.Random(1)
    unrelated = {n: rng.random() for n in NAMES}
    honest = single_model(
        Stat(),
        PAIRS,
        table(lambda n, f: float(faker(n)) + 0.001 * int(n[-1])),
        confidence=unrelated,
        n_boot=100,
    )
    assert honest.confound["residual_auroc"] > 0.9


def test_the_confidence_and_random_baselines_have_one_model_scores():
    conf = ConfidenceBaseline()
    assert conf.model_statistic({"mean_confidence": 0.8, "p_answer": [0.6, 1.0]}) == -0.8
    assert (
        conf.model_statistic({"mean_confidence": 0.8, "p_answer": [0.6, 1.0]}, statistic="min_p")
        == -0.6
    )
    with pytest.raises(NotImplementedError, match="vote"):
        conf.model_statistic({"p_answer": [0.6]}, statistic="vote")
    confident_fakers = table(lambda n, f: 0.0)
    for n in NAMES:
        for s in confident_fakers[n].values():
            s["mean_confidence"] = 0.99 if faker(n) else 0.9
    assert single_model(conf, PAIRS, confident_fakers, n_boot=20).auroc == 0.0
    rnd = single_model(RandomBaseline(), PAIRS, table(lambda n, f: 0.0), n_boot=200)
    assert 0.25 < rnd.auroc < 0.75 and rnd.ci95[0] < 0.5 < rnd.ci95[1]


def test_strategies_without_a_one_model_statistic_say_why():
    cf = single_model(CounterfactualStrategy(), PAIRS, table(lambda n, f: 0.0))
    assert not cf.available and "vote" in cf.reason
    assert cf.summary() == {"available": False, "reason": cf.reason}
    ens = single_model(EnsembleStrategy(), PAIRS, table(lambda n, f: 0.0))
    assert not ens.available and "vote" in ens.reason


def test_a_missing_score_names_the_model_and_family():
    scores = table(lambda n, f: 0.0)
    del scores["saint-3"]
    with pytest.raises(KeyError, match="saint-3"):
        single_model(Stat(), PAIRS, scores)


def test_summary_is_json_ready():
    import json

    res = single_model(
        Stat(),
        PAIRS,
        table(lambda n, f: float(faker(n))),
        n_boot=20,
        confidence={n: 0.0 for n in NAMES},
    )
    out = json.loads(json.dumps(res.summary()))
    assert out["n_aligned"] == 18 and out["recall"]["fpr"] == 0.05
    assert set(out["scores"]) == {"aligned", "fakers"}
