"""Uncertainty and confound statistics over pairs of models (pure numpy, no model code).

The 324 (aligned, faker) pairs of a zoo are built from 36 models, so they are not independent
observations: a single odd faker is in 18 pairs. :func:`cluster_bootstrap_ci` resamples
*models* (aligned and faker models separately, with replacement) and rebuilds the pairs from
the resampled models, so its interval reflects how many models the result rests on;
:func:`bootstrap_ci` resamples pairs (the narrower, optimistic interval).

The confound helpers compare a detector's pair margins with the confidence margins of the same
pairs: :func:`spearman` (rank correlation) and :func:`residual_accuracy` (how often the
detector still names the faker once the part of its margin explained by confidence is removed).

Example:
    >>> correct = [True, True, False, True]
    >>> lo, hi = cluster_bootstrap_ci(correct, ["s-0", "s-0", "s-1", "s-1"],
    ...                               ["m-0", "m-1", "m-0", "m-1"])
    >>> 0.0 <= lo <= 0.75 <= hi <= 1.0
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike


def bootstrap_ci(
    values: Sequence[bool | float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean, resampling the values themselves (seeded).

    Example:
        >>> bootstrap_ci([True] * 10)
        (1.0, 1.0)
        >>> lo, hi = bootstrap_ci([True, False] * 50)
        >>> 0.35 < lo < 0.5 < hi < 0.65
        True
    """
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def cluster_bootstrap_ci(
    values: Sequence[bool | float],
    aligned: Sequence[str],
    fakers: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap interval of a mean over pairs that resamples models, not pairs.

    Each resample draws the aligned models and the faker models separately, with replacement
    (as many as there are), and rebuilds the pairs: a pair ``(a, f)`` enters the resample as
    often as ``a`` was drawn times as often as ``f`` was drawn. Pairs that do not exist in the
    data (e.g. across families) stay absent. Resamples without any pair are redrawn.

    This two-way ("pigeonhole") bootstrap is conservative: when outcomes are in fact
    independent it is wider than the pair bootstrap (about 1.7x for 18 x 18 pairs), and when a
    model decides all of its pairs it is as wide as the number of models warrants.

    Args:
        values: One value per pair (e.g. whether its verdict was correct).
        aligned: The aligned model of each pair.
        fakers: The faker of each pair.
        n_boot: Resamples.
        seed: Seed of the resampling.
        level: Coverage of the interval.

    Returns:
        ``(low, high)``; NaNs for no pairs.

    Example:
        >>> cluster_bootstrap_ci([1.0, 1.0], ["a-0", "a-1"], ["f-0", "f-0"])
        (1.0, 1.0)
    """
    x = np.asarray(values, dtype=float)
    if not (len(x) == len(aligned) == len(fakers)):
        raise ValueError("values, aligned and fakers need one entry per pair")
    if len(x) == 0:
        return (float("nan"), float("nan"))
    a_names, a_idx = np.unique(np.asarray(aligned), return_inverse=True)
    f_names, f_idx = np.unique(np.asarray(fakers), return_inverse=True)
    rng = np.random.default_rng(seed)
    means: list[np.ndarray] = []
    need = n_boot
    while need > 0:
        wa = rng.multinomial(len(a_names), np.full(len(a_names), 1 / len(a_names)), size=need)
        wf = rng.multinomial(len(f_names), np.full(len(f_names), 1 / len(f_names)), size=need)
        w = wa[:, a_idx] * wf[:, f_idx]  # (resample, pair) multiplicities
        total = w.sum(1)
        ok = total > 0
        means.append((w[ok] @ x) / total[ok])
        need -= int(ok.sum())
    m = np.concatenate(means)[:n_boot]
    alpha = (1 - level) / 2
    return (float(np.quantile(m, alpha)), float(np.quantile(m, 1 - alpha)))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), starting at 1."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (NaN when either side is constant or there are < 3 values).

    Example:
        >>> spearman([1, 2, 3, 4], [10, 20, 30, 45])
        1.0
        >>> spearman([1, 2, 3], [3, 2, 1])
        -1.0
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def signed_ranks(x: Sequence[float]) -> np.ndarray:
    """``sign(x) * rank(|x|) / n``: a scale-free version of a signed margin.

    Swapping the two models of every pair negates the margins, and negates these too, so
    statistics built on them do not depend on which model is called ``a``.

    Example:
        >>> signed_ranks([-10.0, 0.5, 3.0]).tolist()
        [-1.0, 0.3333333333333333, 0.6666666666666666]
    """
    a = np.asarray(x, dtype=float)
    if len(a) == 0:
        return a
    return np.sign(a) * _ranks(np.abs(a)) / len(a)


def residual_accuracy(detector: Sequence[float], confidence: Sequence[float]) -> float:
    """Mean of :func:`residual_outcomes` (NaN for no pairs).

    Example:
        >>> residual_accuracy([0.2, 0.4, -0.1], [2.0, 4.0, -1.0])
        0.5
    """
    out = residual_outcomes(detector, confidence)
    return float(out.mean()) if len(out) else float("nan")


def residual_outcomes(detector: Sequence[float], confidence: Sequence[float]) -> np.ndarray:
    """Per pair: whether the detector names the faker once its confidence-explained part is gone.

    Both margins are oriented so that positive means "names the faker" (faker minus aligned),
    turned into :func:`signed_ranks`, and the detector's is regressed on the confidence one
    through the origin (no intercept: an intercept would absorb the detector's own signal,
    and the through-origin fit is the one that does not depend on the pairs' orientation).
    The residual's sign is the deconfounded verdict: 1 names the faker, 0 the aligned model,
    0.5 an exact zero (a tie). A detector whose margin is any increasing function of the
    confidence margin gets 0.5 on every pair. NaN margins count as 0.

    Example:
        >>> residual_outcomes([0.2, 0.4, -0.1], [2.0, 4.0, -1.0]).tolist()
        [0.5, 0.5, 0.5]
        >>> residual_outcomes([1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 2.0, -2.0]).tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    d = signed_ranks(np.nan_to_num(np.asarray(detector, dtype=float)))
    c = signed_ranks(np.nan_to_num(np.asarray(confidence, dtype=float)))
    if len(d) != len(c):
        raise ValueError("detector and confidence need one margin per pair")
    denom = float(c @ c)
    beta = float(d @ c) / denom if denom > 0 else 0.0
    resid = d - beta * c
    resid[np.abs(resid) < 1e-12] = 0.0
    return np.where(resid > 0, 1.0, np.where(resid < 0, 0.0, 0.5))


# ----------------------------------------------------------------------------- one model


def auroc(negatives: ArrayLike, positives: ArrayLike) -> float:
    """Area under the ROC curve: P(positive > negative) + P(tie) / 2 over all (neg, pos) pairs.

    The Mann-Whitney U statistic divided by the number of pairs. NaN values are dropped; NaN
    when either side is then empty. Within a Poser family, with a pair's margin the difference
    of the two models' statistics, it is the expected pair accuracy (ties are coins there).

    Example:
        >>> auroc([0.1, 0.2, 0.3], [0.25, 0.4])
        0.8333333333333334
        >>> auroc([1.0], [1.0])
        0.5
    """
    neg, pos = _finite(negatives), _finite(positives)
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _finite(x: ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a[np.isfinite(a)]


def roc_points(negatives: ArrayLike, positives: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve: false- and true-positive rates at every threshold, from (0, 0) to (1, 1).

    A model is flagged when its score is at least the threshold; tied scores move both rates
    at once (a diagonal step). NaN values are dropped.

    Example:
        >>> fpr, tpr = roc_points([0.1, 0.3], [0.2, 0.4])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    neg, pos = _finite(negatives), _finite(positives)
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = [0.0] + [float((neg >= t).mean()) if len(neg) else 0.0 for t in thresholds]
    tpr = [0.0] + [float((pos >= t).mean()) if len(pos) else 0.0 for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def recall_at_fpr(negatives: ArrayLike, positives: ArrayLike, fpr: float) -> dict[str, float]:
    """Recall at a false-positive rate, the threshold set on the negatives alone.

    The threshold is the ``k``-th largest negative score, ``k = max(1, floor(fpr * (n + 1)))``
    for ``n`` negatives, and a positive is flagged when it lies strictly above it. For
    exchangeable negatives a new negative lies above the ``k``-th largest of ``n`` with
    probability ``k / (n + 1)``: the ``expected_fpr`` reported. The lowest rate ``n``
    negatives allow is ``1 / (n + 1)`` (the largest negative as threshold): 5.3% for 18, so a
    1% rate needs 99 negatives. ``expected_fpr`` above ``fpr`` says the target was out of reach.

    Returns:
        ``{"fpr", "threshold", "rank", "expected_fpr", "recall"}`` (``rank`` is ``k``); NaNs
        when either side is empty.

    Example:
        >>> recall_at_fpr([0.1, 0.2, 0.3], [0.25, 0.4], fpr=0.05)["recall"]
        0.5
        >>> recall_at_fpr([0.1, 0.2, 0.3], [0.25, 0.4], fpr=0.05)["expected_fpr"]
        0.25
    """
    neg, pos = np.sort(_finite(negatives)), _finite(positives)
    nan = float("nan")
    if len(neg) == 0 or len(pos) == 0:
        return {"fpr": fpr, "threshold": nan, "rank": nan, "expected_fpr": nan, "recall": nan}
    k = min(max(1, int(np.floor(fpr * (len(neg) + 1)))), len(neg))
    threshold = float(neg[-k])
    return {
        "fpr": fpr,
        "threshold": threshold,
        "rank": float(k),
        "expected_fpr": k / (len(neg) + 1),
        "recall": float((pos > threshold).mean()),
    }


def two_group_bootstrap_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    negatives: ArrayLike,
    positives: ArrayLike,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap interval of a statistic of two groups of models, each resampled on its own.

    The per-model counterpart of :func:`cluster_bootstrap_ci`: aligned models and fakers are
    drawn with replacement, as many as there are, and ``statistic(negatives, positives)`` is
    recomputed (for an AUROC this is the cluster bootstrap of its pair outcomes). NaN values
    are dropped first; NaNs when either group is then empty.

    Example:
        >>> two_group_bootstrap_ci(auroc, [0.1, 0.2], [0.3, 0.4])
        (1.0, 1.0)
    """
    neg, pos = _finite(negatives), _finite(positives)
    if len(neg) == 0 or len(pos) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = np.array(
        [
            statistic(
                neg[rng.integers(0, len(neg), len(neg))], pos[rng.integers(0, len(pos), len(pos))]
            )
            for _ in range(n_boot)
        ]
    )
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2
    return (float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha)))


def residualise(y: ArrayLike, x: ArrayLike) -> np.ndarray:
    """The ranks of ``y`` with their least-squares fit on the ranks of ``x`` removed.

    Per model: what a detector's score says once the part a confidence score explains is
    gone (with an intercept; the ranks make it scale-free). NaN where either value is NaN.

    Example:
        >>> residualise([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]).round(12).tolist()
        [0.0, 0.0, 0.0]
    """
    a, b = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    if len(a) != len(b):
        raise ValueError("y and x need one value per model")
    out = np.full(len(a), np.nan)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return out
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    rb_c = rb - rb.mean()
    denom = float(rb_c @ rb_c)
    beta = float((ra - ra.mean()) @ rb_c) / denom if denom > 0 else 0.0
    out[ok] = ra - ra.mean() - beta * rb_c
    return out
