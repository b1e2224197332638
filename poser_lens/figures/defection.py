"""Figure of the defection probe: each model's mean projection, aligned vs fakers, per family.

Scores are read as the strategy stores them
(:class:`~poser_lens.strategies.defection_probe.DefectionScore`), at the headline settings the
run recorded.

Example:
    >>> [f.__name__ for f in FIGURES]
    ['fig_defection_probe']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.figures.style import (
    ALIGNED_COLOR,
    FAKER_COLOR,
    MissingResults,
    chance_line,
    headline_settings,
    mean_ci,
    new_figure,
    save,
)
from poser_lens.runs import RunDir
from poser_lens.strategies.defection_probe import DefectionProbeStrategy, DefectionScore


def _accuracy_note(run: RunDir, name: str) -> str:
    """``", accuracy 0.62 [0.55, 0.70]"`` from ``results.json``, or nothing without results."""
    try:
        res = run.results()["strategies"][name]
        return f", accuracy {res['accuracy']:.2f} [{res['ci95'][0]:.2f}, {res['ci95'][1]:.2f}]"
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return ""


def fig_defection_probe(run: RunDir, out_dir: Path) -> list[Path]:
    """Each model's headline statistic per family: aligned vs fakers, class means with 95% CIs.

    One column per family; a dot per model (blue aligned, red faker) at its mean projection on
    its own yes/no direction (units of the contrast pairs' separation), the class mean with
    its 95% CI beside the dots, and a dashed line at 0, the midpoint of the "yes" and "no"
    answers (no lean either way: the chance line of a projection). A detector works when the
    red dots sit above the blue ones of their family.
    """
    strat = DefectionProbeStrategy()
    table: Mapping[str, Mapping[str, DefectionScore]] = run.scores(strat.name)
    settings = headline_settings(run, strat)
    families = sorted({fam for fams in table.values() for fam in fams})
    if not families:
        raise MissingResults("no defection_probe scores in this run")
    fig, ax = new_figure(width=max(3.4, 1.1 * len(families) + 1.4), height=3.2)
    rng = np.random.default_rng(0)
    for x, fam in enumerate(families):
        for offset, aligned, color in ((-0.18, True, ALIGNED_COLOR), (0.18, False, FAKER_COLOR)):
            values = [
                strat.statistic(fams[fam], **settings)
                for model, fams in sorted(table.items())
                if fam in fams and is_aligned(model_persona(model)[0]) == aligned
            ]
            if not values:
                continue
            xs = x + offset + rng.uniform(-0.05, 0.05, len(values))
            ax.scatter(xs, values, s=10, color=color, alpha=0.6, lw=0)
            m, lo, hi = mean_ci(values)
            err = [[m - lo], [hi - m]]
            ax.errorbar(x + offset + 0.1, m, yerr=err, fmt="o", ms=4, color=color, capsize=3)
    ax.scatter([], [], color=ALIGNED_COLOR, s=10, label="aligned")
    ax.scatter([], [], color=FAKER_COLOR, s=10, label="faker")
    chance_line(ax, 0.0, label="contrast midpoint")
    ax.set_xticks(range(len(families)), [f.replace("_and_", "\n& ") for f in families])
    ax.set_ylabel("mean projection on yes - no\n(units of the pairs' separation)")
    layer, centre = settings["layer_frac"], settings["centre"]
    ax.set_title(
        f"Defection probe, layer {layer:g} of depth, centre {centre}"
        + _accuracy_note(run, strat.name),
        fontsize=8,
    )
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out_dir, "defection_probe")


#: The figures of this module, in order.
FIGURES = (fig_defection_probe,)
