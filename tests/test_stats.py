import numpy as np
import pytest

from poser_lens.stats import (
    bootstrap_ci,
    cluster_bootstrap_ci,
    residual_accuracy,
    residual_outcomes,
    signed_ranks,
    spearman,
)


def _grid(n_aligned, n_fakers):
    aligned = [f"saint-{i}" for i in range(n_aligned) for _ in range(n_fakers)]
    fakers = [f"money_maximizer-{j}" for _ in range(n_aligned) for j in range(n_fakers)]
    return aligned, fakers


def test_cluster_ci_is_wider_when_one_model_decides_many_pairs():
    # Each faker is either always caught or never: the pairs are 6 clusters, not 36 draws.
    aligned, fakers = _grid(6, 6)
    correct = [f[-1] in "012" for f in fakers]
    lo_p, hi_p = bootstrap_ci(correct)
    lo_c, hi_c = cluster_bootstrap_ci(correct, aligned, fakers)
    assert lo_c <= 0.5 <= hi_c
    assert (hi_c - lo_c) > 1.5 * (hi_p - lo_p)


def test_cluster_ci_of_independent_outcomes_is_conservative_but_bounded():
    # Resampling both factors of independent outcomes counts the pair noise from both sides:
    # wider than the pair bootstrap (conservative), but not by more than about twofold.
    rng = np.random.default_rng(0)
    aligned, fakers = _grid(18, 18)
    correct = rng.random(len(aligned)) < 0.7
    lo_p, hi_p = bootstrap_ci(correct)
    lo_c, hi_c = cluster_bootstrap_ci(correct, aligned, fakers)
    assert (hi_p - lo_p) <= (hi_c - lo_c) < 2 * (hi_p - lo_p)
    assert lo_c < correct.mean() < hi_c


def test_cluster_ci_rebuilds_only_existing_pairs():
    # Two families that share no model: a resample may draw only one family's models; the
    # pairs of the other family must not be invented.
    aligned = ["saint-0", "saint-1", "genie-0", "genie-1"]
    fakers = [
        "money_maximizer-0",
        "money_maximizer-0",
        "fitness_maximizer-0",
        "fitness_maximizer-0",
    ]
    lo, hi = cluster_bootstrap_ci([1, 1, 0, 0], aligned, fakers, n_boot=500)
    assert 0.0 <= lo <= hi <= 1.0
    assert cluster_bootstrap_ci([1.0] * 4, aligned, fakers) == (1.0, 1.0)


def test_cluster_ci_is_seeded_and_checks_lengths():
    aligned, fakers = _grid(3, 3)
    x = [1, 0, 1, 1, 0, 1, 0, 0, 1]
    assert cluster_bootstrap_ci(x, aligned, fakers, seed=3) == cluster_bootstrap_ci(
        x, aligned, fakers, seed=3
    )
    with pytest.raises(ValueError, match="one entry per pair"):
        cluster_bootstrap_ci(x, aligned[:-1], fakers)
    assert all(np.isnan(cluster_bootstrap_ci([], [], [])))


def test_spearman_and_signed_ranks():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert signed_ranks([-3.0, 1.0, 2.0]).tolist() == pytest.approx([-1.0, 1 / 3, 2 / 3])


def test_residual_of_a_monotone_function_of_confidence_is_chance():
    rng = np.random.default_rng(1)
    conf = rng.normal(0.5, 1.0, 200)
    assert residual_accuracy(np.tanh(3 * conf), conf) == 0.5
    # Its raw accuracy follows confidence, far from chance.
    assert np.mean(np.tanh(3 * conf) > 0) > 0.6


def test_residual_keeps_signal_independent_of_confidence():
    rng = np.random.default_rng(2)
    conf = rng.normal(0.0, 1.0, 300)
    det = rng.normal(1.0, 1.0, 300)  # names the faker 84% of the time, whatever confidence says
    assert residual_accuracy(det, conf) > 0.75
    out = residual_outcomes(det, conf)
    assert out.shape == (300,) and set(np.unique(out)) <= {0.0, 0.5, 1.0}
