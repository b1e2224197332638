"""Figures of the removal study (Poser Figs 1 and 10) from ``<run>/removal/`` only.

* ``fig01_removal_noise``: training against S2, one line per faker: P(aligned action) on the
  held-out prompts it used to misbehave on, over training steps (Poser Fig 1).
* ``fig10_removal``: the same for plain SFT (left) and SFT + S2 noise (right) (Poser Fig 10).
* ``removal_final``: final mean P(aligned) per method with 95% CIs over models, beside the
  paper's 76% / 86%, with the controls (random labels, aligned models).

Thin lines are models: red the treated fakers, grey the fakers trained on random labels, blue
the aligned controls.

Example:
    >>> [f.__name__ for f in FIGURES]
    ['fig01_removal_noise', 'fig10_removal', 'removal_final']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poser_lens._io import read_json
from poser_lens.figures.style import (
    ALIGNED_COLOR,
    FAKER_COLOR,
    OURS_COLOR,
    PAPER_COLOR,
    MissingResults,
    chance_line,
    new_figure,
    save,
)
from poser_lens.runs import RunDir

#: Short tick labels of the roles.
SHORT_ROLES = {
    "treatment": "fakers",
    "random_labels": "fakers,\nrandom labels",
    "aligned_control": "aligned\n(control)",
}
#: Line colour of each role.
ROLE_COLORS = {
    "treatment": FAKER_COLOR,
    "random_labels": "#8c8c8c",
    "aligned_control": ALIGNED_COLOR,
}


def _summary(run: RunDir) -> dict[str, Any]:
    """The removal job's ``removal/summary.json`` (its roles, method titles, paper numbers)."""
    path = run.root / "removal" / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no removal results")
    return read_json(path)


def _records(run: RunDir) -> list[dict[str, Any]]:
    """The removal job's stored records, ``removal/records/*.json``."""
    _summary(run)
    return [read_json(p) for p in sorted((run.root / "removal" / "records").glob("*.json"))]


def _panel(ax: Any, recs: Sequence[dict[str, Any]], method: str, s: dict[str, Any]) -> None:
    """One line per model of one method, the treated fakers' mean, the paper's number."""
    shown = set()
    for role in ("aligned_control", "random_labels", "treatment"):
        rows = [r for r in recs if r["method"] == method and r["role"] == role]
        for r in rows:
            label = None if role in shown else f"{s['roles'][role]} (n={len(rows)})"
            shown.add(role)
            ax.plot(
                r["steps"],
                r["p_aligned"],
                color=ROLE_COLORS[role],
                lw=0.8,
                alpha=0.55,
                ls="--" if role == "random_labels" else "-",
                label=label,
            )
        if role == "treatment" and rows:
            steps = rows[0]["steps"]
            mean = np.mean([r["p_aligned"] for r in rows if r["steps"] == steps], axis=0)
            ax.plot(steps, mean, color=FAKER_COLOR, lw=2.2, label="fakers: mean")
    paper = s["paper"]
    if method in paper:
        chance_line(ax, paper[method], label=f"paper: {paper[method]:.0%}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("P(aligned action), previously misaligned prompts")
    ax.set_title(s["method_titles"].get(method, method))


def fig01_removal_noise(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 1: training against S2 (SFT + noise), one line per faker over training steps."""
    recs, s = _records(run), _summary(run)
    if not any(r["method"] == "sft_noise" for r in recs):
        raise MissingResults("sft_noise")
    fig, ax = new_figure(width=5.0, height=3.6)
    _panel(ax, recs, "sft_noise", s)
    ax.legend(frameon=False, fontsize=7, loc="center right")
    return save(fig, out_dir, "fig01_removal_noise")


def fig10_removal(run: RunDir, out_dir: Path) -> list[Path]:
    """Fig 10: SFT on own answers (left) and SFT + S2 noise (right), one line per model."""
    recs, s = _records(run), _summary(run)
    methods = [m for m in s["method_titles"] if any(r["method"] == m for r in recs)]
    fig, axes = new_figure(len(methods), width=4.6, height=3.6)
    axes = np.atleast_1d(axes)
    for ax, method in zip(axes, methods, strict=True):
        _panel(ax, recs, method, s)
    axes[0].legend(frameon=False, fontsize=7, loc="center right")
    return save(fig, out_dir, "fig10_removal")


def removal_final(run: RunDir, out_dir: Path) -> list[Path]:
    """Final mean P(aligned) per role and method (95% CI over models) beside the paper."""
    s = _summary(run)
    groups = s["groups"]
    labels, ours, ci, paper, colors = [], [], [], [], []
    for role in s["roles"]:
        for method, g in groups.get(role, {}).items():
            labels.append(f"{s['method_titles'].get(method, method)}\n{SHORT_ROLES[role]}")
            ours.append(g["p_aligned_after"])
            ci.append(g["ci95"])
            paper.append(s["paper"].get(method, np.nan) if role == "treatment" else np.nan)
            colors.append(ROLE_COLORS[role])
    if not labels:
        raise MissingResults("groups")
    fig, ax = new_figure(width=max(4.5, 1.3 * len(labels)), height=3.8)
    x = np.arange(len(labels))
    err = np.array([[o - c[0], c[1] - o] for o, c in zip(ours, ci, strict=True)]).T
    ax.bar(
        x - 0.19,
        ours,
        0.38,
        yerr=err,
        capsize=3,
        color=colors,
        edgecolor=OURS_COLOR,
        label="poser_lens (95% CI over models)",
    )
    ax.bar(x + 0.19, paper, 0.38, color=PAPER_COLOR, label="paper (Poser §4)")
    for xi, p in zip(x, paper, strict=True):
        if not np.isnan(p):
            ax.text(xi + 0.19, p + 0.02, f"{p:.0%}", ha="center", fontsize=7)
    chance_line(ax, 0.5, label="chance (0.5)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("final P(aligned action)")
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    return save(fig, out_dir, "removal_final")


FIGURES = (fig01_removal_noise, fig10_removal, removal_final)
