"""The steering sweep's contrast directions, memoised per (model, family) context.

S1 and S2 read the same directions when their layer grids agree (:func:`cached_direction`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from poser_lens.probes import mass_mean
from poser_lens.strategies.base import ModelContext
from poser_lens.strategies.common import contrast_residuals
from poser_lens.strategies.memo import ContrastDirection, ContrastResiduals


def cached_direction(
    ctx: ModelContext, layer: int, n_pairs: int, blocks: Sequence[int] = ()
) -> tuple[Tensor, list]:
    """The S1/S2 contrast direction at a block and the evaluation prompts (memoised per context).

    The contrast prompts' residuals are read once for ``layer`` and every block of ``blocks``
    (a strategy's whole grid: one forward per side up to the deepest block,
    :func:`~poser_lens.strategies.common.contrast_residuals`) and memoised, with each block's
    direction, under the grid, so S1 and S2, whose grids are the same by default, share one
    pass of the contrast prompts. Each block's direction is what
    :func:`~poser_lens.strategies.common.contrast_direction` gives (the same forwards, stopped
    at that block). Strategies with different grids share nothing (their
    :class:`~poser_lens.strategies.memo.ContrastResiduals` keys differ).
    """
    grid = tuple(sorted({layer, *blocks}))

    def direction() -> tuple[Tensor, list]:
        crit, clean, rest = ctx.cached(
            ContrastResiduals(n_pairs, grid),
            lambda: contrast_residuals(
                ctx.model, ctx.tokenizer, ctx.prompts, grid, n_pairs=n_pairs
            ),
        )
        i = grid.index(layer)
        return mass_mean()(crit[:, i].contiguous(), clean[:, i].contiguous()), rest

    return ctx.cached(ContrastDirection(layer, n_pairs, grid), direction)
