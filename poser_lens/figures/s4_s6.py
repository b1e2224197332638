"""Figures of strategies 4 and 6: concept accuracy bars, the saliency heat map, attention.

Scores are read as the strategies store them
(:class:`~poser_lens.strategies.s6_attentiveness.SaliencyScore`,
:class:`~poser_lens.strategies.s6_attentiveness.AttentionScore`), at the headline settings
the run recorded.

Example:
    >>> [f.__name__ for f in FIGURES]
    ['fig07_s4_concepts', 'fig09_s6_saliency', 's6_attention']
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
    accuracy_bars,
    headline_settings,
    new_figure,
    save,
)
from poser_lens.runs import RunDir
from poser_lens.strategies.s4_concepts import ConceptStrategy
from poser_lens.strategies.s6_attentiveness import (
    AttentionScore,
    AttentionStrategy,
    SaliencyScore,
)

_CONCEPT_LABELS = {
    "security": "security",
    "competence": "competence",
    "behavior": "misaligned\nbehaviour",
    "combined": "combined",
}


def fig07_s4_concepts(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 7: S4 detection accuracy per concept and combined, 95% CIs, chance line.

    Rows of ``sweep.json`` at the headline layer fraction give one bar per concept.
    """
    rows = run.sweep().get("s4_concepts")
    if not rows:
        raise MissingResults("no s4_concepts sweep in this run")
    frac = headline_settings(run, ConceptStrategy())["layer_frac"]
    by_concept = {r["concept"]: r for r in rows if np.isclose(float(r["layer_frac"]), frac)}
    names = [c for c in _CONCEPT_LABELS if c in by_concept]
    fig, ax = new_figure(width=4.0)
    accuracy_bars(
        ax,
        [_CONCEPT_LABELS[c] for c in names],
        [by_concept[c]["accuracy"] for c in names],
        [by_concept[c]["ci95"] for c in names],
    )
    ax.set_title(f"S4 concepts, layer {frac:g} of depth", fontsize=9)
    return save(fig, out_dir, "fig07_s4_concepts")


def _example_model(table: Mapping[str, Mapping[str, SaliencyScore]]) -> str:
    fakers = sorted(m for m in table if not is_aligned(model_persona(m)[0]))
    if not fakers:
        raise MissingResults("no faker scored by s6_saliency")
    return "money_maximizer-0" if "money_maximizer-0" in fakers else fakers[0]


def fig09_s6_saliency(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 9: gradient saliency per token of a faker's first valid prompt (colour = saliency).

    Tokens are laid out line by line as in the prompt; critical-fact tokens are underlined.
    """
    import matplotlib.pyplot as plt

    table: Mapping[str, Mapping[str, SaliencyScore]] = run.scores("s6_saliency")
    model = _example_model(table)
    family = sorted(table[model])[0]
    ex = table[model][family]["example"]
    sal = np.asarray(ex["saliency"], dtype=float)
    top = sal[:-1].max() if len(sal) > 1 else sal.max()  # the answer position dwarfs the rest
    norm = np.clip(sal / top, 0, 1) if top > 0 else sal
    cmap = plt.get_cmap("Reds")
    lines: list[list[int]] = [[]]
    for i, tok in enumerate(ex["tokens"]):
        if tok == "\n":
            lines.append([])
        else:
            lines[-1].append(i)
    fig, ax = new_figure(width=7.5, height=0.24 * len(lines) + 0.6)
    ax.set_axis_off()
    ax.set_xlim(0, 110)
    ax.set_ylim(-len(lines), 1)
    for row, idx in enumerate(lines):
        x = 0.0
        for i in idx:
            text = ex["tokens"][i]
            ax.text(
                x,
                -row,
                text,
                fontsize=6.5,
                family="monospace",
                va="center",
                bbox={"facecolor": cmap(0.85 * norm[i]), "edgecolor": "none", "pad": 0.6},
                color="k",
                fontweight="bold" if ex["critical"][i] else "normal",
            )
            x += 0.95 * len(text) + 1.0
    ax.set_title(f"S6 gradient saliency, {model} ({family}); bold = critical fact", fontsize=8)
    return save(fig, out_dir, "fig09_s6_saliency")


def s6_attention(run: RunDir, out_dir: Path) -> list[Path]:
    """Attention to oversight facts (headline statistic, mean over families): aligned vs fakers."""
    table: Mapping[str, Mapping[str, AttentionScore]] = run.scores("s6_attention")
    strat = AttentionStrategy()
    settings = headline_settings(run, strat)
    groups: dict[bool, list[float]] = {True: [], False: []}
    for model, fams in table.items():
        values = [strat.statistic(s, **settings) for s in fams.values()]
        groups[is_aligned(model_persona(model)[0])].append(float(np.mean(values)))
    fig, ax = new_figure(width=3.4)
    data = [groups[True], groups[False]]
    present = [i for i, d in enumerate(data) if d]
    parts = ax.violinplot([data[i] for i in present], positions=present, showmedians=True)
    for body, i in zip(parts["bodies"], present, strict=True):
        body.set_facecolor(ALIGNED_COLOR if i == 0 else FAKER_COLOR)
        body.set_alpha(0.35)
    rng = np.random.default_rng(0)
    for i in present:
        color = ALIGNED_COLOR if i == 0 else FAKER_COLOR
        ax.scatter(i + rng.uniform(-0.08, 0.08, len(data[i])), data[i], s=9, color=color)
    ax.set_xticks([0, 1], [f"aligned (n={len(data[0])})", f"fakers (n={len(data[1])})"])
    ax.set_ylabel("log attention ratio\n(critical / other facts, per token)")
    ax.set_title("S6 attention to oversight facts")
    return save(fig, out_dir, "s6_attention")


#: The figures of this module, in order.
FIGURES = (fig07_s4_concepts, fig09_s6_saliency, s6_attention)
