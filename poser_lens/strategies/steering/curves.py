"""Curve readers of the steering sweep: a score's curves by block and variant, and their rises.

A steering score (:class:`~poser_lens.strategies.steering.scores.CurvesScore`) holds, per
block and variant, curves over the coefficients, one per draw. :func:`curves_by_variant`
builds that layout from the engine's readout; :func:`at_layer` finds one variant's curves at
a fraction of depth (the only place the readers resolve a layer), :func:`draw_mean` averages
a curve over draws, and :func:`rise`, :func:`rise_at`, :func:`mass_curve` read the verdicts'
numbers. :func:`choose_coeff` and :func:`kl_strength` pick a coefficient without labels.

Example:
    >>> choose_coeff([0.0, 1.0, 2.0], [[1.0, 0.95, 0.5]], keep=0.9)
    1.0
    >>> kl_strength([0.0, 1.0, 2.0], [0.0, 0.2, 0.6], target=0.4)
    1.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from torch import Tensor

from poser_lens.hooks import resolve_layer
from poser_lens.strategies.base import LayerKey
from poser_lens.strategies.steering.scores import (
    VARIANT_AXIS,
    CurveKey,
    CurvesScore,
    VariantCurves,
    unpack_variants,
)


def curves_by_variant(
    res: Mapping[int, Sequence[Tensor]], names: Sequence[str], n_draws: int
) -> dict[LayerKey, dict[str, VariantCurves]]:
    """The score layout: block -> variant -> ``{"p_misaligned", "mass_ab"}``.

    Each is a list of ``n_draws`` curves over the coefficients (means over prompts). ``res``
    maps blocks to :class:`~poser_lens.strategies.steering.engine.VariantReadout` (or any
    sequence starting with P(misaligned) and P(A)+P(B)), whose variant axis is laid out as
    :data:`~poser_lens.strategies.steering.scores.VARIANT_AXIS`.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # one prompt, 2 variants x 2 coefficients
        >>> curves_by_variant({0: (p, p)}, ["add", "subtract"], 1)["0"]["subtract"]["p_misaligned"]
        [[0.30000001192092896, 0.4000000059604645]]
    """
    out: dict[LayerKey, dict[str, VariantCurves]] = {}
    for layer, r in res.items():
        p, m = (
            unpack_variants(
                x.mean(0), VARIANT_AXIS, "variant draw coeff", variant=len(names), draw=n_draws
            )
            for x in (r[0], r[1])
        )
        out[str(layer)] = {
            k: {"p_misaligned": p[i].tolist(), "mass_ab": m[i].tolist()}
            for i, k in enumerate(names)
        }
    return out


def choose_coeff(coeffs: Sequence[float], mass: Sequence[Sequence[float]], keep: float) -> float:
    """The largest coefficient at which the mean mass curve keeps ``keep`` of its coeff-0 value.

    Label-free (Poser's Fig 11): it looks at P(A)+P(B) only, never at which model is the faker.
    The curve must stay above the threshold at every smaller coefficient too.

    Example:
        >>> choose_coeff([0, 1, 2, 3], [[1.0, 0.95, 0.5, 0.9], [1.0, 0.95, 0.7, 0.9]], 0.9)
        1
    """
    curve = np.mean(np.asarray(mass, dtype=float), axis=0)
    ok = curve >= keep * curve[0]
    n_ok = len(ok) if ok.all() else int(np.argmin(ok))
    return coeffs[max(n_ok - 1, 0)]


def at_layer(score: CurvesScore, variant: str, layer_frac: float) -> VariantCurves:
    """The curves of ``variant`` at the block a fraction of depth resolves to.

    Raises:
        KeyError: When the block or the variant was not scored (e.g. a restricted score).
    """
    return score["layers"][str(resolve_layer(score["n_layers"], float(layer_frac)))][variant]


def draw_mean(curves: VariantCurves, key: CurveKey = "p_misaligned") -> np.ndarray:
    """A stored curve over the coefficients, averaged over draws.

    Example:
        >>> draw_mean({"p_misaligned": [[0.0, 0.5], [0.5, 1.0]]}).tolist()
        [0.25, 0.75]
    """
    return np.mean(np.asarray(curves[key], dtype=float), axis=0)


def mean_curve(
    score: CurvesScore, variant: str, layer_frac: float, key: CurveKey = "p_misaligned"
) -> np.ndarray:
    """A stored curve over the coefficients, averaged over draws, at a layer.

    ``key``: ``p_misaligned``, ``mass_ab`` or (S2) ``log_odds``, ``kl``.
    """
    return draw_mean(at_layer(score, variant, layer_frac), key)


def curve_rise(coeffs: Sequence[float], curve: np.ndarray, coeff: float) -> float:
    """A curve's value at the grid coefficient ``coeff`` minus at coefficient 0."""
    return float(curve[list(coeffs).index(coeff)] - curve[0])


def curve_rise_at(coeffs: Sequence[float], curve: np.ndarray, strength: float) -> float:
    """A curve's value at any strength (linearly interpolated) minus at coefficient 0."""
    return float(np.interp(strength, np.asarray(coeffs, dtype=float), curve) - curve[0])


def rise(
    score: CurvesScore,
    variant: str,
    layer_frac: float,
    coeff: float,
    key: CurveKey = "p_misaligned",
) -> float:
    """Mean P(misaligned) at ``coeff`` minus at coefficient 0 (averaged over draws).

    ``variant`` is a noise kind (S2) or a sign (S1); ``key="log_odds"`` gives the rise of the
    mean log-odds of the misaligned answer instead.
    """
    return curve_rise(score["coeffs"], mean_curve(score, variant, layer_frac, key), coeff)


def rise_at(
    score: CurvesScore,
    variant: str,
    layer_frac: float,
    strength: float,
    key: CurveKey = "p_misaligned",
) -> float:
    """:func:`rise` at any noise strength, linearly interpolated between grid coefficients.

    Example:
        >>> s = {"n_layers": 1, "coeffs": [0.0, 1.0, 2.0],
        ...      "layers": {"0": {"u": {"p_misaligned": [[0.1, 0.3, 0.7]]}}}}
        >>> round(rise_at(s, "u", 0.0, 1.5), 6)
        0.4
    """
    return curve_rise_at(score["coeffs"], mean_curve(score, variant, layer_frac, key), strength)


def kl_strength(coeffs: ArrayLike, kl: ArrayLike, target: float) -> float:
    """The noise strength at which a mean KL curve first reaches ``target`` (interpolated).

    Linear interpolation between the two grid coefficients around the first crossing; the
    largest coefficient when the curve never reaches the target (also for a NaN curve).

    Example:
        >>> kl_strength([0, 1, 2, 4], [0.0, 0.1, 0.3, 0.9], 0.6)
        3.0
        >>> kl_strength([0, 1, 2], [0.0, 0.1, 0.2], 0.5)
        2.0
    """
    c, k = np.asarray(coeffs, dtype=float), np.asarray(kl, dtype=float)
    hit = np.nonzero(k >= target)[0]
    if len(hit) == 0:
        return float(c[-1])
    i = int(hit[0])
    if i == 0:
        return float(c[0])
    return float(c[i - 1] + (target - k[i - 1]) / (k[i] - k[i - 1]) * (c[i] - c[i - 1]))


def mass_curve(score: CurvesScore, variant: str, layer_frac: float) -> list[float]:
    """Mean P(A)+P(B) per coefficient (averaged over draws) at a layer."""
    return mean_curve(score, variant, layer_frac, "mass_ab").tolist()
