"""The summary chart (every strategy beside the paper) and Fig 13 (confidence violins).

Example:
    >>> import tempfile
    >>> from poser_lens._io import write_json_atomic
    >>> run = RunDir(tempfile.mkdtemp())
    >>> write_json_atomic(run.results_path, {"strategies": {"random": {
    ...     "accuracy": 0.5, "ci95": [0.4, 0.6], "paper_accuracy": 0.5, "n_pairs": 10}}})
    >>> [p.name for p in fig_summary(run, run.figures_dir)]
    ['summary.png', 'summary.pdf']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.figures.style import (
    ALIGNED_COLOR,
    FAKER_COLOR,
    accuracy_bars,
    new_figure,
    save,
)
from poser_lens.runs import RunDir

if TYPE_CHECKING:
    from poser_lens.strategies.baselines import ConfidenceScore


def fig_summary(run: RunDir, out_dir: Path) -> list[Path]:
    """Detection accuracy of every strategy with its 95% CI, beside the paper's number."""
    res = run.results()["strategies"]
    names = list(res)
    fig, ax = new_figure(width=max(4.5, 0.55 * len(names) + 1.5), height=3.6)
    accuracy_bars(
        ax,
        names,
        [res[n]["accuracy"] for n in names],
        [res[n]["ci95"] for n in names],
        paper=[res[n].get("paper_accuracy") for n in names],
    )
    ax.set_title("Which model is the faker? (accuracy over pairs)")
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, out_dir, "summary")


def fig13_confidence(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 13: P(shared answer) on the valid prompts, aligned vs faking models (violins)."""
    scores: Mapping[str, Mapping[str, ConfidenceScore]] = run.scores("confidence_baseline")
    groups: dict[bool, list[float]] = {True: [], False: []}
    for model, fams in scores.items():
        aligned = is_aligned(model_persona(model)[0])
        for score in fams.values():
            groups[aligned].extend(score["p_answer"])
    fig, ax = new_figure(width=3.6)
    data = [groups[True], groups[False]]
    parts = ax.violinplot([d or [float("nan")] for d in data], showmedians=True)
    for body, color in zip(parts["bodies"], (ALIGNED_COLOR, FAKER_COLOR), strict=True):
        body.set_facecolor(color)
        body.set_alpha(0.5)
    ax.set_xticks([1, 2], ["aligned", "fakers"])
    ax.set_ylabel("P(answer) on valid prompts")
    ax.set_title("Confidence on the valid prompts")
    return save(fig, out_dir, "fig13_confidence")


FIGURES = (fig_summary, fig13_confidence)
