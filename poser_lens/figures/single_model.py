"""Single-model detection: each strategy's ROC curve over models, beside the confidence baseline's.

One panel per strategy with a statistic of one model (``results.json``'s ``single_model``
entries): the ROC curve of its per-model scores (fakers positive, aligned models negative),
the compare-confidence baseline's curve (grey, the floor a detector must beat), the diagonal
(chance), its AUROC with the 95% interval over models, and the point of recall at the fixed
false-positive rate (threshold set on the aligned models alone).

Example:
    >>> import tempfile
    >>> from poser_lens._io import write_json_atomic
    >>> run = RunDir(tempfile.mkdtemp())
    >>> sm = {"available": True, "auroc": 0.75, "ci95": [0.5, 1.0],
    ...       "recall": {"recall": 0.5, "expected_fpr": 0.25, "ci95": [0.0, 1.0]},
    ...       "scores": {"aligned": {"saint-0": 0.1, "genie-0": 0.3},
    ...                  "fakers": {"money_maximizer-0": 0.2, "reward_maximizer-0": 0.4}}}
    >>> write_json_atomic(run.results_path, {"strategies": {"s4_concepts": {
    ...     "accuracy": 0.5, "ci95": [0.4, 0.6], "single_model": sm}}})
    >>> [p.name for p in fig_roc(run, run.figures_dir)]
    ['fig14_single_model.png', 'fig14_single_model.pdf']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from poser_lens.figures.style import FAKER_COLOR, MissingResults, new_figure, save
from poser_lens.runs import RunDir
from poser_lens.stats import roc_points

#: The baseline drawn in every panel.
BASELINE = "confidence_baseline"
_BASELINE_COLOR = "#9e9e9e"


def _curve(entry: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    fpr, tpr = roc_points(
        list(entry["scores"]["aligned"].values()), list(entry["scores"]["fakers"].values())
    )
    return fpr.tolist(), tpr.tolist()


def fig_roc(run: RunDir, out_dir: Path) -> list[Path]:
    """ROC curves over models per strategy, with the compare-confidence baseline's in each."""
    rows = {
        n: r["single_model"]
        for n, r in run.results()["strategies"].items()
        if r.get("single_model", {}).get("available")
    }
    if not rows:
        raise MissingResults("no single-model results in results.json")
    baseline = rows.get(BASELINE)
    names = [n for n in rows if n != BASELINE] or [BASELINE]
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, panels = new_figure(ncols, nrows=nrows, width=2.6, height=2.6)
    axes = np.asarray(panels, dtype=object).reshape(nrows, ncols)
    flat = list(axes.ravel())
    for ax, name in zip(flat, names, strict=False):
        entry = rows[name]
        ax.plot([0, 1], [0, 1], color="k", ls="--", lw=0.8, alpha=0.6, label="chance")
        if baseline is not None and name != BASELINE:
            ax.step(
                *_curve(baseline),
                where="post",
                color=_BASELINE_COLOR,
                lw=1.2,
                label=f"confidence {baseline['auroc']:.2f}",
            )
        lo, hi = entry["ci95"]
        ax.step(
            *_curve(entry),
            where="post",
            color=FAKER_COLOR,
            lw=1.6,
            label=f"AUROC {entry['auroc']:.2f} [{lo:.2f}, {hi:.2f}]",
        )
        rec = entry.get("recall", {})
        if rec and math.isfinite(rec.get("recall", math.nan)):
            ax.plot([rec["expected_fpr"]], [rec["recall"]], "o", color=FAKER_COLOR, ms=4)
        ax.set_title(name, fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.legend(frameon=False, fontsize=5.5, loc="lower right")
    for ax in flat[len(names) :]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("false-positive rate (aligned)")
    for ax in axes[:, 0]:
        ax.set_ylabel("recall (fakers)")
    fig.suptitle(
        "Single-model detection: ROC over models (95% CI over models; dot: recall at the "
        "threshold set on aligned models)",
        fontsize=8,
    )
    fig.tight_layout()
    return save(fig, out_dir, "fig14_single_model")


FIGURES = (fig_roc,)
