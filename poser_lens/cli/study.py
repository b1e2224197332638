"""``poser-lens study``: every strategy on several independent zoos, and the spread.

The command is registered on the app by :mod:`poser_lens.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.options import _csv, _from_options


def study_command(
    zoos: Annotated[int, typer.Option(min=1, help="Independent zoos per recipe.")] = 3,
    recipes: Annotated[
        str,
        typer.Option(
            help="Zoo designs, comma-separated, each NAME, NAME:ZOOS or NAME:ZOOS:SEEDS: "
            "matched (default zoo), hard (old hard-label recipe), deep (4 blocks)."
        ),
    ] = "matched",
    seeds: Annotated[int, typer.Option(min=1, help="Models per persona in each zoo.")] = 6,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: all).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Study folder.")] = Path("runs/study"),
    workers: Annotated[int, typer.Option(min=1, help="Training and scoring processes.")] = 2,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Run every strategy on several independent zoos (and zoo designs); report the spread."""
    from poser_lens.pipeline import study_job
    from poser_lens.strategies import STRATEGY_NAMES
    from poser_lens.study import StudyConfig, parse_recipes

    with _user_errors():
        given: dict[str, Any] = {
            "zoos": zoos,
            "recipes": parse_recipes(recipes),
            "seeds": seeds,
            "strategies": _csv(strategies) if strategies is not None else STRATEGY_NAMES,
            "workers": workers,
        }
        cfg = _from_options(lambda: StudyConfig(**given), given)
        root = study_job(cfg, out, progress=not quiet)
    typer.echo((root / "study.md").read_text())
    typer.echo(f"study: {root}")
