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

from collections.abc import Sequence

import numpy as np


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
