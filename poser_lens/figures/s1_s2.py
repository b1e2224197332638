"""Figures of strategies 1 and 2: steering and noise curves, the mass plot, the S2 heat map.

Every curve is a class mean (aligned vs fakers) with its 95% band over models, each model's
curve first averaged over its three families (and over noise draws). Scores are read as the
strategies store them (:class:`~poser_lens.strategies.s1_belief.BeliefScore`,
:class:`~poser_lens.strategies.s2_noise.NoiseScore`), by the same reader as their margins
(:func:`~poser_lens.strategies.steering.curves.mean_curve`), at the headline settings the run
recorded.

Example:
    >>> FIGURES[0].__name__
    'fig04_s1_belief'
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
    MissingResults,
    class_band,
    headline_settings,
    new_figure,
    save,
)
from poser_lens.runs import RunDir
from poser_lens.strategies.s1_belief import BeliefScore, BeliefStrategy
from poser_lens.strategies.s2_noise import NoiseScore, NoiseStrategy
from poser_lens.strategies.steering.curves import choose_coeff, mean_curve
from poser_lens.strategies.steering.scores import CurveKey

#: A run's stored S1 or S2 scores: model -> family -> score.
CurveTable = Mapping[str, Mapping[str, BeliefScore | NoiseScore]]


def _curves(
    table: CurveTable, variant: str, key: CurveKey, layer_frac: float
) -> tuple[list[float], dict[str, np.ndarray]]:
    """Coefficients and model -> curve (mean over families and draws) of one variant."""
    out: dict[str, np.ndarray] = {}
    coeffs: list[float] = []
    for model, fams in table.items():
        rows = []
        for score in fams.values():
            rows.append(mean_curve(score, variant, layer_frac, key))
            coeffs = score["coeffs"]
        out[model] = np.mean(rows, axis=0)
    return coeffs, out


def _bands(ax: Any, coeffs: list, curves: dict, ylabel: str) -> None:
    for aligned, color, label in ((True, ALIGNED_COLOR, "aligned"), (False, FAKER_COLOR, "fakers")):
        rows = [c for m, c in curves.items() if is_aligned(model_persona(m)[0]) == aligned]
        if rows:
            class_band(ax, coeffs, rows, color, f"{label} (n={len(rows)})")
    ax.set_xlabel("coefficient")
    ax.set_ylabel(ylabel)


def _panels(
    run: RunDir,
    strategy: BeliefStrategy | NoiseStrategy,
    variants: list[str],
    key: CurveKey,
    ylabel: str,
    title: str,
) -> tuple[Any, Any, dict]:
    table: CurveTable = run.scores(strategy.name)
    frac = float(headline_settings(run, strategy)["layer_frac"])
    fig, axes = new_figure(len(variants))
    axes = np.atleast_1d(axes)
    curves_of = {}
    for ax, variant in zip(axes, variants, strict=True):
        coeffs, curves = _curves(table, variant, key, frac)
        curves_of[variant] = (coeffs, curves)
        _bands(ax, coeffs, curves, ylabel)
        ax.set_title(f"{title}: {variant} (layer {frac:.3g} of depth)")
    axes[0].legend(frameon=False)
    return fig, axes, curves_of


def fig04_s1_belief(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 4: P(misaligned) vs coefficient, adding (left) and subtracting (right) the direction."""
    fig, _, _ = _panels(
        run, BeliefStrategy(), ["add", "subtract"], "p_misaligned", "P(misaligned)", "S1 direction"
    )
    return save(fig, out_dir, "fig04_s1_belief")


def _kinds(run: RunDir) -> list[str]:
    first: NoiseScore = next(iter(next(iter(run.scores("s2_noise").values())).values()))
    return list(first["kinds"])


def fig05_s2_noise(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 5: P(misaligned) vs noise coefficient, aligned vs fakers, per noise kind."""
    fig, _, _ = _panels(
        run, NoiseStrategy(), _kinds(run), "p_misaligned", "P(misaligned)", "S2 noise"
    )
    return save(fig, out_dir, "fig05_s2_noise")


def fig11_s2_mass(run: RunDir, out_dir: Path, keep: float | None = None) -> list[Path]:
    """Fig 11: P(A)+P(B) vs coefficient, with the label-free coefficient of all models marked.

    The headline chooses the coefficient per pair from its two models; the line marks the
    choice made from every model's mean curve (``keep`` of the coefficient-0 mass; default:
    S2's ``mass_keep``).
    """
    strategy = NoiseStrategy()
    keep = strategy.config.mass_keep if keep is None else keep
    fig, axes, curves_of = _panels(run, strategy, _kinds(run), "mass_ab", "P(A) + P(B)", "S2 noise")
    for ax, (coeffs, curves) in zip(axes, curves_of.values(), strict=True):
        chosen = choose_coeff(coeffs, list(curves.values()), keep)
        ax.axvline(
            chosen, color="k", ls=":", lw=1, label=f"chosen ({keep:.0%} of mass): {chosen:g}"
        )
        ax.legend(frameon=False, loc="lower left")
    return save(fig, out_dir, "fig11_s2_mass")


def sens_s2_noise(run: RunDir, out_dir: Path) -> list[Path]:
    """Heat map of S2 accuracy over layer (fraction of depth) x coefficient, per noise kind."""
    rows = run.sweep().get("s2_noise")
    if not rows:
        raise MissingResults("no s2_noise sweep in this run")
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fracs = sorted({float(r["layer_frac"]) for r in rows})
    coeffs = list(dict.fromkeys(r["coeff"] for r in rows))
    fig, axes = new_figure(
        len(kinds), width=0.55 * len(coeffs) + 2.2, height=0.45 * len(fracs) + 1.6
    )
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds, strict=True):
        acc = np.full((len(fracs), len(coeffs)), np.nan)
        for r in rows:
            if r["kind"] == kind:
                acc[fracs.index(float(r["layer_frac"])), coeffs.index(r["coeff"])] = r["accuracy"]
        im = ax.imshow(acc, vmin=0, vmax=1, cmap="RdBu_r", aspect="auto", origin="lower")
        for (i, j), a in np.ndenumerate(acc):
            if not np.isnan(a):
                tone = "white" if abs(a - 0.5) > 0.3 else "black"
                ax.text(j, i, f"{a:.2f}", ha="center", va="center", fontsize=7, color=tone)
        ax.set_xticks(range(len(coeffs)), [str(c) for c in coeffs])
        ax.set_yticks(range(len(fracs)), [f"{f:.3g}" for f in fracs])
        ax.set_xlabel("coefficient")
        ax.set_ylabel("layer (fraction of depth)")
        ax.set_title(f"S2 accuracy: {kind} noise")
    fig.colorbar(im, ax=axes[-1], label="detection accuracy", shrink=0.8)
    return save(fig, out_dir, "sens_s2_noise")


FIGURES = (fig04_s1_belief, fig05_s2_noise, fig11_s2_mass, sens_s2_noise)
