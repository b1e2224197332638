"""``poser-lens remove``: fine-tune the fakers on their own answers, with and without S2 noise.

The command is registered on the app by :mod:`poser_lens.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.options import RayOption, _csv, _from_options
from poser_lens.cli.tables import _console, _removal_table


def remove_command(
    method: Annotated[str, typer.Option(help="sft, sft_noise or both.")] = "both",
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder (default: runs/removal-<testbed>-<config hash>)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Training steps per model (default 100).")
    ] = None,
    fakers: Annotated[
        str | None, typer.Option(help="Comma-separated fakers to treat (default: all).")
    ] = None,
    controls: Annotated[
        bool, typer.Option(help="Also run the controls (aligned models, random labels).")
    ] = True,
    control_seeds: Annotated[
        int, typer.Option(min=1, help="Controls on models with seed < N.")
    ] = 1,
    removal_config: Annotated[
        Path | None, typer.Option(help="YAML/JSON of removal settings (RemovalConfig fields).")
    ] = None,
    testbed: Annotated[str, typer.Option(help="tiny (default).")] = "tiny",
    seeds: Annotated[int, typer.Option(min=1, help="Tiny zoo: models per persona.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of batches, labels and noise.")] = 0,
    zoo: Annotated[Path | None, typer.Option(help="Tiny: use this built zoo folder.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run config (default: the run folder's, if any).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes (one thread each).")] = 2,
    ray: RayOption = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    figures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fine-tune the fakers on their own answers (with/without S2 noise); write the study."""
    import time
    from dataclasses import replace

    from poser_lens.pipeline import removal_job
    from poser_lens.removal.config import RemovalConfig
    from poser_lens.runner import RunConfig

    with _user_errors():
        methods = {"both": ("sft", "sft_noise"), "sft": ("sft",), "sft_noise": ("sft_noise",)}
        if method not in methods:
            raise ValueError(f"--method {method!r}: expected sft, sft_noise or both")
        given: dict[str, Any] = {
            "testbed": testbed,
            "seeds": seeds,
            "seed": seed,
            "device": device,
            "workers": workers,
            "ray": ray,
            "zoo_dir": str(zoo) if zoo else None,
        }
        given = {k: v for k, v in given.items() if v is not None}
        existing = out / "config.yaml" if out is not None else None
        if config is None and existing is not None and existing.exists():
            config = existing
        rc = _from_options(
            lambda: RunConfig.from_file(config, **given) if config else RunConfig(**given), given
        )
        cfg = RemovalConfig.from_file(removal_config) if removal_config else RemovalConfig()
        changes: dict[str, Any] = {
            "methods": methods[method],
            "steps": steps or cfg.steps,
            "controls": controls,
            "control_seeds": control_seeds,
            "seed": seed,
            "fakers": _csv(fakers) if fakers is not None else cfg.fakers,
        }
        cfg = _from_options(lambda: replace(cfg, **changes), changes)
        t0 = time.perf_counter()
        folder, summary = removal_job(rc, cfg, out, figures=figures, progress=not quiet)
        seconds = time.perf_counter() - t0
    console = _console()
    console.print(_removal_table(summary))
    for name, d in summary["detectors"].items():
        for m in cfg.methods:
            if m in d:
                e = d[m]
                console.print(
                    f"{name} after {m}: {e['accuracy_before']:.2f} -> {e['accuracy_after']:.2f} "
                    f"on {e['n_pairs']} pairs of the treated fakers"
                )
    console.print(f"run: {folder.root}  ({seconds:.0f} s)\nreport: {folder.root / 'report.md'}")
