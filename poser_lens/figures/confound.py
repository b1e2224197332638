"""Confound controls: every strategy's headline beside its three confidence controls.

For each strategy, four bars with 95% cluster-bootstrap CIs (models resampled): the headline
accuracy, the accuracy re-scored on confidence-matched prompts, on the pairs where
compare-confidence is wrong (adversarial), and after regressing the confidence margin out; a
second panel shows the compare-confidence baseline by each of its four statistics. A strategy's
deconfounded variants (S2: the rise in log-odds, equal-KL noise) get a bar of their own. A detector
that only tracks confidence sits at 50% matched and residual and near 0% adversarial.

Example:
    >>> import tempfile
    >>> from poser_lens._io import write_json_atomic
    >>> run = RunDir(tempfile.mkdtemp())
    >>> ctl = {"matched": {"available": False}, "adversarial": {"accuracy": 0.4,
    ...        "ci95": [0.2, 0.6]}, "residual": {"accuracy": 0.5, "ci95": [0.4, 0.6]},
    ...        "margin_correlation": 0.1}
    >>> write_json_atomic(run.results_path, {"strategies": {"random": {
    ...     "accuracy": 0.5, "ci95": [0.4, 0.6], "confound": ctl}},
    ...     "confidence": {"mean_p": {"accuracy": 0.5, "ci95": [0.3, 0.7]}}})
    >>> [p.name for p in fig_confound(run, run.figures_dir)]
    ['confound.png', 'confound.pdf']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poser_lens.figures.style import (
    OURS_COLOR,
    MissingResults,
    chance_line,
    new_figure,
    save,
)
from poser_lens.runs import RunDir

#: The bars of each strategy: (label, how to read its accuracy and CI from a results row).
CONTROLS = ("headline", "matched prompts", "adversarial pairs", "confidence regressed out")
_COLORS = (OURS_COLOR, "#4c9f70", "#c0504d", "#8064a2")


def _control(row: dict[str, Any], which: str) -> tuple[float, list[float]]:
    """Accuracy and CI of one control of a results row (NaN when it is not available)."""
    nan = (float("nan"), [float("nan"), float("nan")])
    if which == "headline":
        return row["accuracy"], row["ci95"]
    ctl = row.get("confound", {})
    entry = {
        "matched prompts": ctl.get("matched", {}),
        "adversarial pairs": ctl.get("adversarial", {}),
        "confidence regressed out": ctl.get("residual", {}),
    }[which]
    if not entry or entry.get("available") is False or "accuracy" not in entry:
        return nan
    return entry["accuracy"], entry["ci95"]


def fig_confound(run: RunDir, out_dir: Path) -> list[Path]:
    """Headline vs confound-controlled accuracy per strategy, and the confidence baseline."""
    res = run.results()
    rows = {n: r for n, r in res["strategies"].items() if "confound" in r}
    if not rows:
        raise MissingResults("no confound controls in results.json")
    for n, r in list(rows.items()):  # deconfounded variants (S2): their headline bar only
        for label, v in r.get("variants", {}).items():
            rows[f"{n}:{label}"] = {"accuracy": v["accuracy"], "ci95": v["ci95"]}
    names = list(rows)
    conf = res.get("confidence", {})
    fig, (ax, ax2) = new_figure(
        2,
        width=max(3.5, 0.4 * len(names) + 1.0),  # per panel: the figure is twice as wide
        height=4.0,
        gridspec_kw={"width_ratios": [max(len(names), 1), max(len(conf), 1) * 0.7]},
    )
    x = np.arange(len(names))
    width = 0.8 / len(CONTROLS)
    for i, (which, color) in enumerate(zip(CONTROLS, _COLORS, strict=True)):
        acc, lo, hi = [], [], []
        for n in names:
            a, ci = _control(rows[n], which)
            acc.append(a)
            lo.append(a - ci[0])
            hi.append(ci[1] - a)
        ax.bar(
            x + (i - (len(CONTROLS) - 1) / 2) * width,
            acc,
            width,
            yerr=[lo, hi],
            capsize=2,
            color=color,
            label=which,
            error_kw={"lw": 0.7},
        )
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylim(0, 1.22)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("detection accuracy")
    chance_line(ax)
    ax.set_title("Detectors with confidence controls (95% CI over models)")
    ax.legend(frameon=False, fontsize=6, loc="upper left", ncol=5)
    stats = list(conf)
    if stats:
        acc = [conf[s]["accuracy"] for s in stats]
        lows = [conf[s]["ci95"][0] for s in stats]
        highs = [conf[s]["ci95"][1] for s in stats]
        err = [np.subtract(acc, lows), np.subtract(highs, acc)]
        ax2.bar(np.arange(len(stats)), acc, 0.6, yerr=err, capsize=3, color="#7f7f7f")
        ax2.set_xticks(np.arange(len(stats)), stats, rotation=35, ha="right")
    ax2.set_ylim(0, 1.05)
    chance_line(ax2)
    ax2.set_title("Compare confidence")
    return save(fig, out_dir, "confound")


FIGURES = (fig_confound,)
