"""One look for every figure: colours, chance lines, 95% CI bars, saving as PNG and PDF.

Figures are made from a run folder's stored results only (:class:`poser_lens.runs.RunDir`),
never by running a model.

Example:
    >>> import tempfile, pathlib
    >>> fig, ax = new_figure()
    >>> chance_line(ax)
    >>> paths = save(fig, pathlib.Path(tempfile.mkdtemp()), "demo")
    >>> sorted(p.suffix for p in paths)
    ['.pdf', '.png']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import ArrayLike

from poser_lens.data.schema import is_aligned, model_persona

if TYPE_CHECKING:
    from matplotlib.figure import Figure

if TYPE_CHECKING:
    from poser_lens.runs import RunDir
    from poser_lens.strategies.base import Settings, Strategy

#: Colours of the two classes of models, used by every figure.
ALIGNED_COLOR = "#2b7bba"
FAKER_COLOR = "#d7301f"
OURS_COLOR = "#4d4d4d"
PAPER_COLOR = "#bdbdbd"


def color_of(model: str) -> str:
    """Blue for aligned models, red for fakers (from the name ``<persona>-<seed>``).

    Example:
        >>> color_of("saint-0") == ALIGNED_COLOR, color_of("money_maximizer-1") == FAKER_COLOR
        (True, True)
    """
    return ALIGNED_COLOR if is_aligned(model_persona(model)[0]) else FAKER_COLOR


def new_figure(
    ncols: int = 1, *, nrows: int = 1, width: float = 4.2, height: float = 3.2, **kw: Any
) -> tuple[Figure, Any]:
    """A figure of ``nrows`` x ``ncols`` panels (each ``width`` x ``height``) in the common style.

    Returns the figure and its one axes, its row of axes, or (``nrows > 1``) its 2-D array.
    """
    plt.rcParams.update(
        {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 110}
    )
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw
    )
    if nrows > 1:
        return fig, axes
    return fig, axes[0] if ncols > 1 else axes[0, 0]


def chance_line(ax: Any, y: float = 0.5, *, label: str = "chance") -> None:
    """A dashed horizontal chance line."""
    ax.axhline(y, color="k", ls="--", lw=0.8, alpha=0.6, label=label)


def mean_ci(values: ArrayLike, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a normal-approximation CI of the mean (for curves over models).

    Example:
        >>> mean_ci([1.0, 1.0])
        (1.0, 1.0, 1.0)
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (float("nan"),) * 3
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = 1.96 * float(x.std(ddof=1)) / np.sqrt(len(x))
    return m, float(m - half), float(m + half)


def class_band(ax: Any, xs: ArrayLike, curves: ArrayLike, color: str, label: str) -> None:
    """Mean curve of a class of models with its 95% CI band."""
    arr = np.asarray(curves, dtype=float)
    stats = [mean_ci(arr[:, j]) for j in range(arr.shape[1])]
    m, lo, hi = (np.array(s) for s in zip(*stats, strict=True))
    ax.plot(xs, m, color=color, lw=1.8, label=label)
    ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)


def accuracy_bars(
    ax: Any,
    labels: Sequence[str],
    acc: Sequence[float],
    ci: Sequence[Sequence[float]],
    *,
    paper: Sequence[float | None] | None = None,
) -> None:
    """Accuracy bars with 95% CI error bars, the paper's numbers beside them, a chance line."""
    x = np.arange(len(labels))
    width = 0.38 if paper is not None else 0.6
    acc_a = np.asarray(acc, dtype=float)
    err = np.array([[a - c[0], c[1] - a] for a, c in zip(acc_a, ci, strict=True)]).T
    ax.bar(
        x - (width / 2 if paper is not None else 0),
        acc_a,
        width,
        yerr=err,
        capsize=3,
        color=OURS_COLOR,
        label="poser_lens",
    )
    if paper is not None:
        vals = [np.nan if p is None else p for p in paper]
        ax.bar(x + width / 2, vals, width, color=PAPER_COLOR, label="paper")
    ax.set_xticks(x, labels, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection accuracy")
    chance_line(ax)


class MissingResults(KeyError):
    """A figure's results are not in the run (its strategy, sweep or study was not run).

    :func:`poser_lens.figures.make_figures` skips the figure quietly; any other error in a
    figure is reported.
    """


#: Metadata of saved figures: no creation date, so the same results draw the same bytes.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def save(fig: Any, out_dir: str | Path, name: str) -> list[Path]:
    """Save a figure as ``name.png`` and ``name.pdf`` (atomically enough: temp then rename).

    No date or software version is embedded, so two runs with the same results write the
    same files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    paths = []
    for ext in ("png", "pdf"):
        final = out / f"{name}.{ext}"
        tmp = out / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=150, metadata=_METADATA[ext])
        tmp.replace(final)
        paths.append(final)
    plt.close(fig)
    return paths


def headline_settings(run: RunDir, strategy: Strategy) -> Settings:
    """The settings of ``strategy``'s headline in a run, merged by ``strategy.settings``.

    The settings ``results.json`` recorded for the strategy override its own headline (which
    is all there is when the run has no results yet), so a figure reads its scores where the
    verdicts did.

    Example:
        >>> import tempfile
        >>> from poser_lens.runs import RunDir
        >>> from poser_lens.strategies.s4_concepts import ConceptStrategy
        >>> headline_settings(RunDir(tempfile.mkdtemp()), ConceptStrategy())
        {'concept': 'combined', 'layer_frac': 0.5}
    """
    try:
        recorded = run.results()["strategies"][strategy.name]["settings"]
    except (FileNotFoundError, KeyError, TypeError):
        recorded = {}
    return strategy.settings(**recorded)
