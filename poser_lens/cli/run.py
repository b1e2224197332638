"""``poser-lens run``, ``sweep`` and ``figures``: a run, its settings grids, its figures.

The commands are registered on the app by :mod:`poser_lens.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.options import RayOption, _csv, _file_sets, _from_options
from poser_lens.cli.tables import _console, _results_table, _sweep_table


def _model_names(value: str | None) -> tuple[str, ...] | None:
    """``--models``: names as ``<persona>-<seed>``, however spelled (others left for the check)."""
    from poser_lens.data.schema import model_name

    def name(spelling: str) -> str:
        try:
            return model_name(spelling)
        except ValueError:
            return spelling  # the config check names it

    names = _csv(value)
    return None if names is None else tuple(map(name, names))


def run_command(
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: all).")
    ] = None,
    pairs: Annotated[
        int | None, typer.Option(min=1, help="Evaluate a seeded random subset of N pairs.")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated models; only pairs of these models. With --testbed poser, "
            "a folder is taken as --models-dir."
        ),
    ] = None,
    testbed: Annotated[str | None, typer.Option(help="tiny (default), smol or poser.")] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            help="Poser: folder of HF checkpoint folders (<persona>-<seed> or <persona>_<seed>, "
            "at any depth: models/together/, models/saint_fix/retrained/)."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Poser: the Poser checkout (benchmark, model_pairs.json).")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="Model dtype (default float32; bfloat16 for poser on a GPU; for smol the "
            "zoo's own precision where the device computes it natively)."
        ),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(min=1, help="Tiny zoo: models per persona [default: 6].")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of pair order, coins and strategies [default: 0].")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: runs/<testbed>-<config hash>).")
    ] = None,
    zoo: Annotated[
        Path | None, typer.Option(help="Tiny or smol: use this built zoo folder.")
    ] = None,
    zoo_config: Annotated[
        Path | None, typer.Option(help="Tiny: YAML/JSON zoo settings (as `zoo build`).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run config (e.g. a run folder's config.yaml).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Scoring processes [default: 2].")
    ] = None,
    ray: RayOption = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda [default: cpu].")] = None,
    sweep: Annotated[
        bool | None, typer.Option(help="Evaluate each strategy's settings grid [default: on].")
    ] = None,
    figures: Annotated[bool | None, typer.Option(help="Draw the figures [default: on].")] = None,
    removal: Annotated[
        bool, typer.Option(help="Also run the removal study (as `poser-lens remove`).")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Score every model with every strategy, evaluate all pairs, write report and figures."""
    import time
    from dataclasses import replace

    from poser_lens.pipeline import main_job
    from poser_lens.runner import RunConfig

    with _user_errors():
        if testbed == "poser" and models and models_dir is None and Path(models).is_dir():
            models_dir, models = Path(models), None  # `--models DIR`, as the issue spells it
        given: dict[str, Any] = {
            "testbed": testbed,
            "seeds": seeds,
            "seed": seed,
            "workers": workers,
            "ray": ray,
            "device": device,
            "sweep": sweep,
            "figures": figures,
            "strategies": _csv(strategies),
            "pairs": pairs,
            "models": _model_names(models),
            "zoo_dir": str(zoo) if zoo else None,
            "zoo_config": str(zoo_config) if zoo_config else None,
            "models_dir": str(models_dir) if models_dir else None,
            "data": str(data) if data else None,
            "dtype": dtype,
            "removal": removal or None,
        }
        # Options given on the command line override the config file; unset ones keep its values.
        given = {k: v for k, v in given.items() if v is not None}
        cfg = _from_options(
            lambda: RunConfig.from_file(config, **given) if config else RunConfig(**given), given
        )
        if "dtype" not in given and not _file_sets(config, "dtype"):
            # No precision named: the testbed's (bfloat16 for poser on a GPU, the zoo's own
            # for smol where the device computes it natively, else float32).
            from poser_lens.testbeds import default_dtype

            cfg = replace(cfg, dtype=default_dtype(cfg.testbed_config()))
        t0 = time.perf_counter()
        folder = main_job(cfg, out, progress=not quiet)
        seconds = time.perf_counter() - t0
        results = folder.results()
    console = _console()
    console.print(_results_table(results["strategies"]))
    console.print(
        f"run: {folder.root}  ({results['n_models']} models, {results['n_pairs']} pairs, "
        f"{seconds:.0f} s)\nreport: {folder.root / 'report.md'}"
    )


def sweep_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (holding config.yaml, scores/).")],
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: the run's).")
    ] = None,
) -> None:
    """Re-evaluate a run over each strategy's settings grid from its stored scores."""
    from poser_lens.pipeline import sweep_job
    from poser_lens.report import sensitivity_rows

    with _user_errors():
        names = _csv(strategies)
        if strategies is not None and not names:
            raise ValueError("--strategies: must not be empty")
        result = sweep_job(run_dir, names)
        names = names or tuple(result)
    rows = sensitivity_rows({n: result[n] for n in names if n in result})
    _console().print(_sweep_table(rows))


def figures_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (holding results.json).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default RUN_DIR/figures).")
    ] = None,
) -> None:
    """Re-draw a run's figures from its stored results (PNG and PDF)."""
    from poser_lens.pipeline import redraw

    with _user_errors():
        written = redraw(run_dir, out)
    typer.echo(f"wrote {len(written)} files to {out or run_dir / 'figures'}")
