"""The old home of the steering sweep's engine, outcome maths, score types and curve readers.

They now live in :mod:`poser_lens.strategies.steering`, one module per job; this module keeps
the import path ``poser_lens.strategies.variants`` working (notebooks and user code import
``choose_coeff``, ``mass_curve``, ``variant_readout`` from here).

Example:
    >>> from poser_lens.strategies.steering.engine import variant_readout as engine_readout
    >>> variant_readout is engine_readout
    True
"""

from __future__ import annotations

from poser_lens.strategies.steering.curves import (
    at_layer,
    choose_coeff,
    curves_by_variant,
    draw_mean,
    kl_strength,
    mass_curve,
    mean_curve,
    rise,
    rise_at,
)
from poser_lens.strategies.steering.directions import cached_direction
from poser_lens.strategies.steering.engine import VariantReadout, variant_readout
from poser_lens.strategies.steering.outcomes import (
    OUTCOMES,
    log_odds,
    outcome_kl,
    outcome_log_probs,
)
from poser_lens.strategies.steering.scores import (
    MEASURE_KEYS,
    CurveKey,
    CurvesScore,
    VariantCurves,
)
from poser_lens.strategies.steering.sweep import MIDDLE, Coefficients

__all__ = [
    "MEASURE_KEYS",
    "MIDDLE",
    "OUTCOMES",
    "Coefficients",
    "CurveKey",
    "CurvesScore",
    "VariantCurves",
    "VariantReadout",
    "at_layer",
    "cached_direction",
    "choose_coeff",
    "curves_by_variant",
    "draw_mean",
    "kl_strength",
    "log_odds",
    "mass_curve",
    "mean_curve",
    "outcome_kl",
    "outcome_log_probs",
    "rise",
    "rise_at",
    "variant_readout",
]
