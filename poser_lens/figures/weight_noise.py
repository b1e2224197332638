"""Figure of the weight-noise strategy: P(misaligned) and P(A)+P(B) against the noise level.

Every curve is a class mean (aligned vs fakers) with its 95% band over models, each model's
curve first averaged over its families and noise draws (the same reader as the strategy's
margins, :func:`~poser_lens.strategies.steering.curves.draw_mean`). The label-free level is
marked as S2's Fig 11 marks its coefficient: chosen from every model's mean P(A)+P(B) curve
(:meth:`~poser_lens.strategies.weight_noise.WeightNoiseStrategy.chosen_sigma`'s rule; each
pair's own choice is made from its two models).

Example:
    >>> FIGURES[0].__name__
    'fig_weight_noise'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.figures.style import (
    ALIGNED_COLOR,
    FAKER_COLOR,
    chance_line,
    class_band,
    new_figure,
    save,
)
from poser_lens.runs import RunDir
from poser_lens.strategies.steering.curves import choose_coeff, draw_mean
from poser_lens.strategies.steering.scores import CurveKey
from poser_lens.strategies.weight_noise import WeightNoiseScore, WeightNoiseStrategy


def _curves(
    table: Mapping[str, Mapping[str, WeightNoiseScore]], key: CurveKey
) -> tuple[list[float], dict[str, np.ndarray]]:
    """Noise levels and model -> curve (mean over families and draws)."""
    sigmas: list[float] = []
    out: dict[str, np.ndarray] = {}
    for model, fams in table.items():
        out[model] = np.mean([draw_mean(s["curves"], key) for s in fams.values()], axis=0)
        sigmas = next(iter(fams.values()))["sigmas"]
    return sigmas, out


def fig_weight_noise(run: RunDir, out_dir: Path) -> list[Path]:
    """P(misaligned) (left) and P(A)+P(B) (right) against the weight-noise level.

    Aligned models against fakers, 95% bands over models; a chance line at P(misaligned) 0.5;
    the label-free level (the largest keeping ``mass_keep`` of the noise-free mass, from
    every model's mean mass curve) marked on both panels.
    """
    strategy = WeightNoiseStrategy()
    table: Mapping[str, Mapping[str, WeightNoiseScore]] = run.scores(strategy.name)
    keep = strategy.config.mass_keep
    sigmas, mass = _curves(table, "mass_ab")
    chosen = choose_coeff(sigmas, [c.tolist() for c in mass.values()], keep)
    fig, axes = new_figure(2)
    panels: tuple[tuple[Any, CurveKey, str], ...] = (
        (axes[0], "p_misaligned", "P(misaligned)"),
        (axes[1], "mass_ab", "P(A) + P(B)"),
    )
    for ax, key, label in panels:
        _, curves = _curves(table, key)
        for aligned, color, name in (
            (True, ALIGNED_COLOR, "aligned"),
            (False, FAKER_COLOR, "fakers"),
        ):
            rows = [c for m, c in curves.items() if is_aligned(model_persona(m)[0]) == aligned]
            if rows:
                class_band(ax, sigmas, rows, color, f"{name} (n={len(rows)})")
        ax.axvline(
            chosen, color="k", ls=":", lw=1, label=f"chosen ({keep:.0%} of mass): {chosen:g}"
        )
        ax.set_xlabel("noise level (x each matrix's std)")
        ax.set_ylabel(label)
    chance_line(axes[0])
    axes[0].set_title("Weight noise: P(misaligned)")
    axes[1].set_title("Weight noise: answer mass")
    axes[0].legend(frameon=False)
    return save(fig, out_dir, "fig_weight_noise")


FIGURES = (fig_weight_noise,)
