"""Figures of strategies 3 and 5: learning curves, accuracy vs comparison step, probe accuracy.

Each model's curve is first averaged over its three families; class curves are means with
their 95% band over models. Scores are read as the strategies store them
(:class:`~poser_lens.strategies.s3_learning_speed.SpeedScore`,
:class:`~poser_lens.strategies.s5_decision_speed.DecisionSpeedScore`), S3's by the same reader
as its margin (``curve``), at the headline settings the run recorded.

Example:
    >>> [f.__name__ for f in FIGURES]
    ['fig06_s3_learning_speed', 'fig12_s3_step', 'fig08_s5_decision_speed']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.figures.style import (
    ALIGNED_COLOR,
    FAKER_COLOR,
    MissingResults,
    chance_line,
    class_band,
    color_of,
    headline_settings,
    new_figure,
    save,
)
from poser_lens.hooks import resolve_layer
from poser_lens.runs import RunDir
from poser_lens.strategies.s3_learning_speed import (
    FullSpeedStrategy,
    LoraSpeedStrategy,
    SpeedScore,
)
from poser_lens.strategies.s5_decision_speed import DecisionSpeedScore, DecisionSpeedStrategy

S3 = {"s3_lora": "LoRA (early MLP)", "s3_full": "full fine-tune"}
#: The S3 strategies (default configs), by name.
S3_STRATEGIES: dict[str, type[LoraSpeedStrategy] | type[FullSpeedStrategy]] = {
    "s3_lora": LoraSpeedStrategy,
    "s3_full": FullSpeedStrategy,
}
#: Fig 12 lines: (measure, baseline, line style).
SERIES = (("heldout", "none", "-"), ("batch", "none", "--"), ("heldout", "logit", ":"))


def _by_class(curves: dict[str, np.ndarray]) -> list[tuple[str, str, list[np.ndarray]]]:
    out = []
    for aligned, color, label in ((True, ALIGNED_COLOR, "aligned"), (False, FAKER_COLOR, "fakers")):
        rows = [c for m, c in curves.items() if is_aligned(model_persona(m)[0]) == aligned]
        if rows:
            out.append((color, f"{label} (n={len(rows)})", rows))
    return out


def _s3_curves(
    run: RunDir, strategy: LoraSpeedStrategy | FullSpeedStrategy, settings: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Model -> P(flipped) per step (headline layer and measure), mean over families."""
    table: Mapping[str, Mapping[str, SpeedScore]] = run.scores(strategy.name)
    out = {}
    for model, fams in table.items():
        rows = [
            np.asarray(strategy.curve(score, **settings), dtype=float) for score in fams.values()
        ]
        out[model] = np.mean(rows, axis=0)
    return out


def fig06_s3_learning_speed(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 6: P(flipped) vs training step, aligned vs fakers; LoRA (left), full (right)."""
    present = [s for s in S3 if (run.root / "scores" / s).is_dir()]
    if not present:
        raise FileNotFoundError(f"{run.root}: no scores of s3_lora or s3_full")
    fig, axes = new_figure(len(present))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, present, strict=True):
        strategy = S3_STRATEGIES[name]()
        settings = headline_settings(run, strategy)
        curves = _s3_curves(run, strategy, settings)
        steps = np.arange(len(next(iter(curves.values()))))
        for color, label, rows in _by_class(curves):
            class_band(ax, steps, rows, color, label)
        ax.axvline(float(settings["step"]), color="k", ls=":", lw=1, label="comparison step")
        ax.set_xlabel("training step (updates)")
        ax.set_ylabel(f"P(flipped answer), {settings['measure']} prompts")
        ax.set_title(f"S3 {S3[name]}")
        ax.legend(frameon=False, fontsize=7)
    return save(fig, out_dir, "fig06_s3_learning_speed")


def fig12_s3_step(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 12: S3 detection accuracy vs the step used for the comparison, with 95% CIs."""
    sweep = run.sweep()
    present = [s for s in S3 if s in sweep]
    if not present:
        raise MissingResults("no s3_lora or s3_full rows in sweep.json")
    fig, ax = new_figure(width=7.0)
    for strategy, color in zip(present, ("#6a3d9a", "#33a02c"), strict=False):
        settings = headline_settings(run, S3_STRATEGIES[strategy]())
        for measure, baseline, ls in SERIES:
            rows = [
                r
                for r in sweep[strategy]
                if r.get("measure", "heldout") == measure
                and r.get("baseline", "none") == baseline
                and float(r.get("layer_frac", 0)) == float(settings.get("layer_frac", 0))
            ]
            if not rows:
                continue
            rows.sort(key=lambda r: r["step"])
            x = [r["step"] for r in rows]
            label = f"{S3[strategy]}, {measure}" + (", log-odds gain" if baseline != "none" else "")
            ax.plot(
                x, [r["accuracy"] for r in rows], ls=ls, color=color, marker="o", ms=3, label=label
            )
            lo, hi = zip(*(r["ci95"] for r in rows), strict=True)
            ax.fill_between(x, lo, hi, color=color, alpha=0.12 if ls == "-" else 0.05, lw=0)
    chance_line(ax)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("comparison step (updates)")
    ax.set_ylabel("detection accuracy")
    ax.set_title("S3: accuracy vs the step compared")
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out_dir, "fig12_s3_step")


def fig08_s5_decision_speed(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 8: held-out probe accuracy of the model's own answer per layer, one line a model."""
    table: Mapping[str, Mapping[str, DecisionSpeedScore]] = run.scores("s5_decision_speed")
    curves = {}
    for model, fams in table.items():
        acc = [[np.nan if a is None else a for a in s["accuracy"]] for s in fams.values()]
        with warnings.catch_warnings():  # a layer undefined in every family stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            curves[model] = np.nanmean(np.asarray(acc, dtype=float), axis=0)
    fig, ax = new_figure(width=4.8)
    layers = np.arange(len(next(iter(curves.values()))))
    for model, c in curves.items():
        ax.plot(layers, c, color=color_of(model), lw=0.6, alpha=0.35)
    for color, label, rows in _by_class(curves):
        class_band(ax, layers, rows, color, label)
    settings = headline_settings(run, DecisionSpeedStrategy())
    block = resolve_layer(len(layers) - 1, float(settings["layer_frac"]))
    ax.axvline(block + 1, color="k", ls=":", lw=1, label="headline layer")
    chance_line(ax)
    ax.set_xticks(layers, ["emb", *(str(i) for i in layers[1:] - 1)])
    ax.set_xlabel("residual stream after block")
    ax.set_ylabel("held-out probe accuracy (own answer)")
    ax.set_ylim(0.3, 1.02)
    ax.set_title("S5: when is the answer decided?")
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    return save(fig, out_dir, "fig08_s5_decision_speed")


FIGURES = (fig06_s3_learning_speed, fig12_s3_step, fig08_s5_decision_speed)
