"""Paper-style figures, made from a run folder's stored results only.

:func:`make_figures` (``poser-lens figures RUN_DIR``) draws every figure whose results are
stored. Each figure is one function ``fig(run: RunDir, out_dir: Path) -> list[Path]`` (PNG and
PDF) in a module of this package; a module lists its figures in ``FIGURES``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from poser_lens.runs import RunDir

logger = logging.getLogger(__name__)

#: Modules of figure functions, each with a ``FIGURES`` tuple.
MODULES = (
    "summary",
    "confound",
    "single_model",
    "s1_s2",
    "s3_s5",
    "s4_s6",
    "defection",
    "weight_noise",
    "removal",
)


def figure_functions() -> list[Callable[[RunDir, Path], list[Path]]]:
    """Every registered figure function, in module order."""
    out: list[Callable[[RunDir, Path], list[Path]]] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"poser_lens.figures.{name}")
        except ModuleNotFoundError:
            continue
        out.extend(getattr(module, "FIGURES", ()))
    return out


def make_figures(run_dir: str | Path | RunDir, out_dir: str | Path | None = None) -> list[Path]:
    """Draw every figure whose stored results exist; returns the files written.

    A figure whose results are not in the run (a strategy, sweep or study that was not run:
    :class:`~poser_lens.figures.style.MissingResults`, or its scores folder missing) is
    skipped quietly. A figure whose results lack a key it reads is skipped with a warning
    naming the figure and the key, never silently.
    """
    from poser_lens.figures.style import MissingResults

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    out = Path(out_dir) if out_dir is not None else run.figures_dir
    written: list[Path] = []
    for fig in figure_functions():
        try:
            written += fig(run, out)
        except (FileNotFoundError, MissingResults) as err:
            logger.info("skipped %s: %s", fig.__name__, err)
        except KeyError as err:
            logger.warning("%s: %s not drawn (its results lack %s)", run.root, fig.__name__, err)
    return written
