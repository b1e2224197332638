"""The zoo-to-zoo study figure, from a study folder's ``study.json`` alone.

Per strategy and recipe: one dot per zoo (its headline accuracy), a bar at the mean over zoos,
the range as a whisker, and the mean confidence-matched accuracy as a hollow diamond; chance
line at 50%.

Example:
    >>> import tempfile, pathlib
    >>> from poser_lens._io import write_json_atomic
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> s = {"accuracy": [0.4, 0.6], "mean": 0.5, "min": 0.4, "max": 0.6, "matched_mean": 0.5}
    >>> write_json_atomic(d / "study.json", {"recipes": {"matched": {"zoos": ["matched-0",
    ...     "matched-1"], "strategies": {"random": s}, "confidence": {}}}})
    >>> [p.name for p in fig_study(d / "study.json", d / "figures")]
    ['study.png', 'study.pdf']
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from poser_lens._io import read_json
from poser_lens.figures.style import chance_line, new_figure, save

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def fig_study(study_json: str | Path, out_dir: str | Path) -> list[Path]:
    """Headline accuracy per zoo, mean and range over zoos, per strategy and recipe."""
    study = read_json(Path(study_json))["recipes"]
    recipes = list(study)
    names: list[str] = []
    for entry in study.values():
        names += [n for n in entry["strategies"] if n not in names]
    fig, ax = new_figure(width=max(5.0, 0.7 * len(names) + 2.0), height=3.6)
    x = np.arange(len(names))
    width = 0.8 / max(len(recipes), 1)
    for r, (recipe, color) in enumerate(zip(recipes, _COLORS, strict=False)):
        strategies = study[recipe]["strategies"]
        offset = (r - (len(recipes) - 1) / 2) * width
        for i, name in enumerate(names):
            s = strategies.get(name)
            if s is None or math.isnan(s["mean"]):
                continue
            xs = x[i] + offset
            ax.bar(
                xs,
                s["mean"],
                width * 0.9,
                color=color,
                alpha=0.35,
                label=f"{recipe} ({len(study[recipe]['zoos'])} zoos)" if i == 0 else None,
            )
            ax.vlines(xs, s["min"], s["max"], color=color, lw=1)
            ax.scatter([xs] * len(s["accuracy"]), s["accuracy"], s=8, color=color, zorder=3)
            matched = s.get("matched_mean", math.nan)
            if matched is not None and not math.isnan(matched):
                ax.scatter(
                    [xs],
                    [matched],
                    s=22,
                    marker="D",
                    facecolors="none",
                    edgecolors="k",
                    lw=0.7,
                    zorder=4,
                    label="matched prompts (mean)" if (r, i) == (0, 0) else None,
                )
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection accuracy")
    chance_line(ax)
    ax.set_title("Zoo-to-zoo spread (dots: zoos; bar: mean; line: range)")
    ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, out_dir, "study")
