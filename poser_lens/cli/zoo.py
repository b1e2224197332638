"""``poser-lens zoo ...``: build (tiny or smol) and show a model zoo, its ``zoo.json`` checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.options import RayOption, _csv, _from_options, _RayCommand
from poser_lens.cli.tables import _ZOO_COLUMNS, _console, _zoo_table

zoo_app = typer.Typer(help="Train and inspect the tiny model zoo.", no_args_is_help=True)


def _zoo_rows(root: Path) -> list[dict[str, Any]]:
    """A built zoo's ``zoo.json`` rows, checked: a non-empty list of model rows.

    Raises:
        ValueError: One line naming the file (and the row), if it is not a zoo's table.
    """
    from poser_lens._io import read_json

    path = root / "zoo.json"
    if not path.is_file():
        raise ValueError(f"{path}: no zoo.json (build one with `poser-lens zoo build`)")
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: not a zoo's table (expected a non-empty list of model rows)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
        for key in ("name", *_ZOO_COLUMNS, "train_seconds"):
            value = row.get(key)
            ok = isinstance(value, str) if key == "name" else isinstance(value, (int, float))
            if not ok or isinstance(value, bool):
                what = (
                    "missing"
                    if key not in row
                    else f"not a {'name' if key == 'name' else 'number'}: {value!r}"
                )
                raise ValueError(f"{path}: row {i}: {key} {what}")
    return rows


def _print_zoo(root: Path, seconds: float, *, label: str) -> list[dict[str, Any]]:
    """Print a built zoo's table and one summary line; returns its ``zoo.json`` rows."""
    from poser_lens._io import read_json

    rows = _zoo_rows(root)
    report = read_json(root / "poser" / "benchmark_report.json")
    console = _console()
    console.print(_zoo_table(rows))
    size = sum(f.stat().st_size for f in (root / "models").rglob("*") if f.is_file())
    line = (
        f"{label}: {root}  ({len(rows)} models, {size / 2**20:.1f} MiB, {seconds:.0f} s)\n"
        f"benchmark: {report['valid_prompts']} valid prompts, {report['n_pairs']} pairs"
    )
    if "confidence_baseline" in report:
        line += (
            f", compare-confidence baseline {report['confidence_baseline']:.2f} "
            f"(filter: {report.get('confidence_filter', 'none')})"
        )
    stats = report.get("confidence_statistics", {})
    if stats:
        line += "\ncompare-confidence by statistic [95% CI over models]: " + ", ".join(
            f"{k} {v['accuracy']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]"
            for k, v in stats.items()
        )
    console.print(line)
    return rows


def _zoo_build_smol(
    personas: str | None,
    seeds: int,
    out: Path | None,
    device: str,
    data: Path | None,
    steps: int | None,
    seed: int,
    quiet: bool,
    config: Path | None,
    recipe: str | None,
) -> None:
    """``zoo build --testbed smol``: LoRA persona adapters over SmolLM2-135M."""
    import time
    from dataclasses import replace

    from poser_lens._io import check_writable
    from poser_lens.models.smol_zoo import (
        CONCEPT_RECIPE,
        SMOL_TARGETS,
        SmolZooConfig,
        build_smol_zoo,
    )
    from poser_lens.testbeds import check_device

    with _user_errors():
        if recipe not in (None, "shipped", "concept"):
            raise ValueError(f"--recipe {recipe!r}: the smol testbed has shipped or concept")
        cfg = SmolZooConfig.from_file(config) if config is not None else SmolZooConfig()
        if recipe == "concept":  # the recipe's settings, under any the file sets itself
            import yaml

            given = yaml.safe_load(config.read_text()) if config is not None else {}
            keep = set(given) if isinstance(given, dict) else set()
            cfg = replace(cfg, **{k: v for k, v in CONCEPT_RECIPE.items() if k not in keep})
        if data is not None and not data.is_dir():
            raise ValueError(f"--data {data}: no such folder")
        # The tiny default of --seeds (6) would mean 36 models of ~13 min each on a CPU.
        changes: dict[str, Any] = {
            "seeds": seeds if seeds != 6 else cfg.seeds,
            "personas": _csv(personas) if personas else cfg.personas,
            "device": device,
            "data": str(data) if data is not None else None,
            "steps": steps or cfg.steps,
        }
        cfg = _from_options(lambda: replace(cfg, **changes), changes)
        cfg = replace(cfg, generator=replace(cfg.generator, seed=seed))
        check_device(cfg.device)
        if out is not None:
            check_writable(out, "zoo folder")
        t0 = time.perf_counter()
        root = build_smol_zoo(cfg, out, progress=not quiet)
    rows = _print_zoo(root, time.perf_counter() - t0, label="smol zoo")
    for line in SMOL_TARGETS.missed(rows):
        _console().print(f"target missed: {line}", style="yellow")
    _console().print(f"score it: poser-lens run --testbed smol --zoo {root}")


@zoo_app.command("build", cls=_RayCommand)
def zoo_build(
    seeds: Annotated[int, typer.Option(min=1, help="Models per persona (Poser: 6).")] = 6,
    out: Annotated[
        Path | None, typer.Option(help="Folder to build in (default: the user cache).")
    ] = None,
    personas: Annotated[
        str | None, typer.Option(help="Comma-separated subset of personas (default: all six).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Parallel training processes.")] = 2,
    ray: RayOption = None,
    from_scratch: Annotated[
        bool, typer.Option(help="Train persona models from random weights, not the shared base.")
    ] = False,
    balance_confidence: Annotated[
        bool, typer.Option(help="Filter valid prompts until compare-confidence is near chance.")
    ] = False,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="matched (default: every persona trained to the same answer confidence) or "
            "hard (plain labels; fakers end up less confident). Smol: shipped (default, the "
            "recipe of the shipped zoo) or concept (varied banks, stacked bfloat16 training, "
            "the held-out bank)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated scenarios.")] = 0,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON file overriding zoo settings (model, base, finetune, ...)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    testbed: Annotated[
        str, typer.Option(help="tiny (default) or smol (SmolLM2-135M LoRA personas).")
    ] = "tiny",
    device: Annotated[str, typer.Option(help="Smol: cpu or cuda.")] = "cpu",
    data: Annotated[
        Path | None, typer.Option(help="Smol: train on this Poser checkout's training files.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Smol: optimiser steps per model (default 1200).")
    ] = None,
) -> None:
    """Train the shared base and 6 personas x SEEDS fine-tunes (cached), then the benchmark.

    With ``--testbed smol``: retrain the LoRA persona adapters over SmolLM2-135M (default: the
    six personas, one seed, as shipped with poser_lens; ``--personas``/``--seeds`` choose),
    resumable; use the result with ``run --testbed smol --zoo FOLDER``.
    """
    import time
    from dataclasses import replace

    from poser_lens._io import check_writable
    from poser_lens.data.schema import PERSONAS
    from poser_lens.models.zoo import ZooConfig, build_zoo
    from poser_lens.models.zoo_base import ZooTargets

    if testbed == "smol":
        if ray is not None:
            with _user_errors():
                raise ValueError("--ray: the smol zoo trains in one process (tiny zoo only)")
        _zoo_build_smol(personas, seeds, out, device, data, steps, seed, quiet, config, recipe)
        return
    with _user_errors():
        if testbed != "tiny":
            raise ValueError(f"--testbed {testbed!r}: expected tiny or smol")
        cfg = ZooConfig.from_file(config) if config is not None else ZooConfig()
        changes: dict[str, Any] = {
            "seeds": seeds,
            "personas": _csv(personas) if personas else PERSONAS,
            "workers": workers,
            "ray": ray,
            "from_scratch": from_scratch or cfg.from_scratch,
            "balance_confidence": balance_confidence or cfg.balance_confidence,
            "recipe": recipe or cfg.recipe,
        }
        cfg = _from_options(lambda: replace(cfg, **changes), changes)
        cfg = replace(cfg, generator=replace(cfg.generator, seed=seed))
        if out is not None:
            check_writable(out, "zoo folder")
        t0 = time.perf_counter()
        root = build_zoo(cfg, out, progress=not quiet)
    rows = _print_zoo(root, time.perf_counter() - t0, label="zoo")
    for line in ZooTargets().missed(rows):
        _console().print(f"target missed: {line}", style="yellow")


@zoo_app.command("show")
def zoo_show(
    root: Annotated[Path, typer.Argument(help="A zoo folder (holding zoo.json).")],
) -> None:
    """Print a built zoo's table and benchmark summary."""
    with _user_errors():
        rows = _zoo_rows(root)
    _console().print(_zoo_table(rows))
