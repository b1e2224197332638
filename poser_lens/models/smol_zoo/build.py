"""Building a smol zoo stack by stack, and its tables (``zoo.json``, model card, benchmark)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from poser_lens._io import building, read_json, removed_on_error, step_lock, write_json_atomic
from poser_lens.data.schema import model_persona as split_name
from poser_lens.models.benchmark_build import build_benchmark
from poser_lens.models.model_card import write_model_card
from poser_lens.models.smol_zoo.config import SMOL_TARGETS, SmolZooConfig
from poser_lens.models.smol_zoo.data import needed_families, zoo_data
from poser_lens.models.smol_zoo.train import train_persona


def build_smol_zoo(
    cfg: SmolZooConfig = SmolZooConfig(), out: str | Path | None = None, *, progress: bool = True
) -> Path:
    """Build (or finish building) a smol zoo and its benchmark; returns its folder.

    Stacks (:meth:`SmolZooConfig.stacks`) are trained one after another (a 135M model uses
    both cores of a small CPU). After each, ``zoo.json`` and the benchmark are written for
    the models built so far, so a build spread over several sittings leaves a usable zoo of
    its finished models at every stage.

    Args:
        cfg: Zoo settings.
        out: Folder (default: ``<cache>/smol_zoo/<key>``).
        progress: Show progress bars.

    Returns:
        The zoo folder, holding ``zoo.json`` and ``poser/``.
    """
    if not needed_families(cfg.personas):
        raise ValueError(
            f"personas {', '.join(cfg.personas)}: need at least one aligned and one faking persona"
        )
    root = cfg.folder(out)
    # A build that fails before any training has started leaves no folder behind.
    with (
        removed_on_error(
            root, keep=lambda r: any(r.glob("models/*/*")) or any(r.glob("partial/*"))
        ),
        contextlib.ExitStack() as held,
    ):
        cfg.claim(root)
        shared = None
        # Registered as building root from the first stack that trains, so that a complete
        # zoo (a read-only one too) is not written to.
        registered = False
        for stack in cfg.stacks():
            if not _unbuilt(root, stack):
                continue
            if not registered:
                held.enter_context(building(root))
                registered = True
            # Another build sharing the folder may be training this stack: wait, then reuse.
            with step_lock(root, f"models-{stack[0]}"):
                if not (todo := _unbuilt(root, stack)):
                    continue
                if cfg.stacked:
                    from poser_lens.models.smol_train import (
                        SharedBase,
                        checkpoint_path,
                        train_stack,
                    )

                    # The whole stack resumes from its checkpoint; without one (a fresh
                    # machine: checkpoints are not committed) only the models not yet built
                    # train, so a committed model is never trained again.
                    names = stack if checkpoint_path(root, stack).exists() else todo
                    shared = shared or SharedBase(cfg, progress=progress)
                    train_stack(root, cfg, names, progress=progress, shared=shared)
                else:
                    for name in todo:
                        train_persona(root, cfg, name, progress=progress)
            write_zoo_tables(root, cfg)
        write_zoo_tables(root, cfg)
    return root


def _unbuilt(root: Path, names: Sequence[str]) -> list[str]:
    """The models of ``names`` not yet saved in the zoo at ``root``."""
    return [n for n in names if not (root / "models" / n / "meta.json").exists()]


def write_zoo_tables(root: Path, cfg: SmolZooConfig) -> None:
    """``zoo.json``, the model card and the benchmark of every model built in ``root`` so far.

    Models of earlier builds of other personas or seeds count too; without an aligned and a
    faking model of one family there is no pair, and only ``zoo.json`` is written.
    """
    models = root / "models"
    built = sorted(p.name for p in models.iterdir() if (p / "meta.json").exists())
    if not built:
        return
    rows = [read_json(models / n / "meta.json") for n in built]
    write_json_atomic(root / "zoo.json", rows)
    write_model_card(root, cfg.to_dict(), cfg.key(), rows, SMOL_TARGETS)
    if not needed_families([split_name(n)[0] for n in built]):
        return
    data = zoo_data(cfg)
    data = replace(
        data,
        benchmark_pool={f: v[: cfg.n_benchmark] for f, v in data.benchmark_pool.items()},
    )
    build_benchmark(root, built, data, threshold=cfg.valid_threshold())
