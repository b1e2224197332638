"""Score types of the steering sweep (S1, S2) and the layout of its variant axis.

A steering score stores, per block and variant (an S1 sign, an S2 noise kind), curves over
the coefficients (:class:`VariantCurves`), each one per draw (S1: one draw). The readout of a
block holds every variant of every prompt on one axis, laid out as :data:`VARIANT_AXIS`:
variant-major, then draw, then coefficient. This is the one place that order is written;
:func:`pack_variants` and :func:`unpack_variants` name it with einops.

Example:
    >>> import torch
    >>> x = torch.arange(12.0)  # 2 variants x 3 draws x 2 coefficients
    >>> unpack_variants(x, "(variant draw coeff)", "variant draw coeff", draw=3, coeff=2)[1, 0]
    tensor([6., 7.])
    >>> torch.equal(pack_variants(x.view(2, 3, 2, 1)).flatten(), x)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict

from einops import rearrange
from torch import Tensor

from poser_lens.strategies.base import LayerKey

if TYPE_CHECKING:  # only in (postponed) annotations, so Python 3.10 runs without it
    from typing_extensions import NotRequired

#: The packed variant axis of a block's readout: every (variant, draw, coefficient).
VARIANT_AXIS = "(variant draw coeff)"

#: A curve of :class:`VariantCurves`.
CurveKey = Literal["p_misaligned", "mass_ab", "log_odds", "kl"]

#: S2 ``measure`` setting -> the stored curve it reads.
MEASURE_KEYS: dict[str, CurveKey] = {"p": "p_misaligned", "logodds": "log_odds"}


def pack_variants(deltas: Tensor) -> Tensor:
    """``[variant, draw, coeff, d_model]`` -> ``[(variant draw coeff), d_model]``."""
    return rearrange(deltas, f"variant draw coeff d_model -> {VARIANT_AXIS} d_model")


def unpack_variants(x: Tensor, before: str, after: str, **sizes: Any) -> Tensor:
    """``x`` with its :data:`VARIANT_AXIS` split into ``variant draw coeff``.

    ``before`` and ``after`` are einops patterns naming every axis of ``x`` and of the result
    (``"prompt (variant draw coeff) outcome"``); ``sizes`` the sizes einops cannot infer
    (``draw``, ``coeff``). The variant axis must be written as :data:`VARIANT_AXIS` in
    ``before``.
    """
    if VARIANT_AXIS not in before:
        raise ValueError(f"{before!r} does not name the variant axis {VARIANT_AXIS!r}")
    return rearrange(x, f"{before} -> {after}", **sizes)


class VariantCurves(TypedDict):
    """The curves of one variant (an S1 sign, an S2 noise kind) at one block.

    Each is a list of draws (S1: one), each a curve over the score's ``coeffs`` of a mean
    over the evaluation prompts.

    Attributes:
        p_misaligned: P(misaligned letter).
        mass_ab: P(A) + P(B) (not in a restricted S1 score).
        log_odds: S2 only: log-odds of the misaligned answer.
        kl: S2 only: KL(clean || noisy) over the four outcomes, against coefficient 0.
    """

    p_misaligned: list[list[float]]
    mass_ab: NotRequired[list[list[float]]]
    log_odds: NotRequired[list[list[float]]]
    kl: NotRequired[list[list[float]]]


class CurvesScore(TypedDict):
    """The part of an S1 or S2 score that the curve readers read.

    The readers: :mod:`~poser_lens.strategies.steering.curves`.

    Attributes:
        n_layers: Blocks of the model.
        coeffs: The coefficients of every curve, starting at 0.
        layers: Block (:data:`~poser_lens.strategies.base.LayerKey`) -> variant -> its
            :class:`VariantCurves`.
    """

    n_layers: int
    coeffs: list[float]
    layers: dict[LayerKey, dict[str, VariantCurves]]
