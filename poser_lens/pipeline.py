"""Whole jobs, wired: what each ``poser-lens`` command runs (the CLI only parses and prints).

Each function here composes the layers below it: a testbed (:mod:`poser_lens.testbeds`), a
job (:mod:`poser_lens.runner`, :mod:`poser_lens.removal`, :mod:`poser_lens.behaviour`,
:mod:`poser_lens.study`), then the figures and the report, which read the run folder only.

* :func:`main_job` (``poser-lens run``): score, evaluate, optionally the removal study, figures,
  report.
* :func:`removal_job` (``poser-lens remove``): the removal study into a run folder.
* :func:`sweep_job` (``poser-lens sweep``): re-evaluate stored scores over each grid.
* :func:`redraw` (``poser-lens figures``): the figures of a run or study folder.
* :func:`study_job` (``poser-lens study``): every strategy on several independent zoos.
* :func:`behaviour_job` (``poser-lens behaviour``): the compliance-gap check.
* :func:`cost_job` (``poser-lens cost``): FLOPs, memory and wall time of a run at paper scale.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from poser_lens._io import (
    check_writable,
    read_json,
    removed_on_error,
    write_json_atomic,
    write_text_atomic,
)
from poser_lens._pool import connect_ray
from poser_lens.behaviour import BehaviourConfig, run_check, zoo_gap_report
from poser_lens.cost import CostConfig, CostReport, cost_report
from poser_lens.data.poser import ModelPair
from poser_lens.evaluation import sweep
from poser_lens.figures import make_figures
from poser_lens.figures.study import fig_study
from poser_lens.models import parse_spec
from poser_lens.models.zoo import ZooConfig
from poser_lens.removal.config import RemovalConfig
from poser_lens.removal.fanout import run_removal
from poser_lens.removal.results import render_removal_report
from poser_lens.report import write_report
from poser_lens.runner import RunConfig, default_run_dir, preflight, run
from poser_lens.runs import RunDir
from poser_lens.study import StudyConfig, render_study, summarise, zoo_config
from poser_lens.testbeds import check_device, check_testbed, make_testbed, select_pairs


def main_job(
    cfg: RunConfig | None = None, out: str | Path | None = None, *, progress: bool = True
) -> RunDir:
    """The main job (``poser-lens run``): testbed, scores, results, removal, figures, report.

    Args:
        cfg: Run settings (``cfg.removal`` adds the removal study, ``cfg.figures`` the
            figures).
        out: Run folder (default ``runs/<testbed>-<config hash>``, so a re-run resumes).
        progress: Show progress bars.

    Returns:
        The run folder, holding ``results.json``, ``report.md`` and ``figures/``.
    """
    cfg = cfg if cfg is not None else RunConfig()
    preflight(cfg, out)
    if cfg.ray is not None:
        connect_ray(cfg.ray)  # no Ray, or no cluster: fail before making the testbed
    testbed = make_testbed(cfg.testbed_config(), progress=progress)
    folder = run(cfg, out, testbed=testbed, progress=progress)
    if cfg.removal:
        run_removal(
            folder,
            RemovalConfig(),
            testbed_config=cfg.testbed_config(),
            strategy_configs=cfg.strategy_configs,
            testbed=testbed,
            pairs=select_pairs(testbed.pairs, cfg.testbed_config()),
            workers=cfg.workers,
            ray=cfg.ray,
            progress=progress,
        )
    if cfg.figures:
        make_figures(folder)
    write_report(folder)
    return folder


def removal_job(
    run_cfg: RunConfig,
    cfg: RemovalConfig | None = None,
    out: str | Path | None = None,
    *,
    figures: bool = True,
    progress: bool = True,
) -> tuple[RunDir, dict[str, Any]]:
    """The removal study (``poser-lens remove``) on ``run_cfg``'s testbed, into a run folder.

    The folder defaults to ``runs/removal-<testbed>-<hash of both configs>``; it keeps the
    run config (``config.yaml``) of the first call. A folder that also holds a run's
    ``results.json`` gets the full report, else a removal-only one.

    Returns:
        The run folder and the study's summary.
    """
    cfg = cfg if cfg is not None else RemovalConfig()
    if run_cfg.ray is not None:
        connect_ray(run_cfg.ray)  # no Ray, or no cluster: fail before writing anything
    if out is None:
        key = json.dumps([run_cfg.key(), asdict(cfg)], sort_keys=True, default=str)
        out = (
            Path("runs")
            / f"removal-{run_cfg.testbed}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        )
    folder = RunDir(out)
    check_testbed(run_cfg.testbed_config())
    check_writable(folder.root, "run folder")
    # A study that fails before any job is stored leaves no folder behind.
    with removed_on_error(folder.root, keep=lambda root: any(root.glob("removal/*/*.json"))):
        if not folder.config_path.exists():
            config = yaml.safe_dump(run_cfg.to_dict(), sort_keys=False)
            write_text_atomic(folder.config_path, config)
        summary = run_removal(
            folder,
            cfg,
            testbed_config=run_cfg.testbed_config(),
            strategy_configs=run_cfg.strategy_configs,
            workers=run_cfg.workers,
            ray=run_cfg.ray,
            progress=progress,
        )
    if figures:
        make_figures(folder)
    if folder.results_path.exists():
        write_report(folder)
    else:
        write_text_atomic(folder.root / "report.md", render_removal_report(folder))
    return folder, summary


def evaluated_pairs(folder: RunDir) -> list[ModelPair]:
    """The pairs a run evaluated, read from its verdict files.

    Raises:
        ValueError: If the folder has no verdicts, or its verdict file is not one (naming the
            file).
    """
    files = sorted((folder.root / "verdicts").glob("*.csv"))
    if not files:
        raise ValueError(f"{folder.root}: no verdicts/ (run `poser-lens run` first)")
    columns = ("aligned", "faker", "family")
    try:
        with files[0].open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{files[0]}: not a verdict file ({err})") from None
    missing = [c for c in columns if c not in fields]
    if missing:
        raise ValueError(
            f"{files[0]}: not a verdict file (no column {', '.join(missing)}; "
            f"expected {', '.join(columns)}, ...)"
        )
    found = {tuple(v[c] or "" for c in columns) for v in rows}
    if not found:
        raise ValueError(f"{files[0]}: no verdict rows")
    pairs = []
    for i, (a, f, fam) in enumerate(sorted(found)):
        try:
            pairs.append(ModelPair(a, f, f"data/benchmark/{fam}.json"))
        except ValueError as err:
            raise ValueError(f"{files[0]}: pair {i}: {err}") from None
    return pairs


def sweep_job(
    run_dir: str | Path, strategies: Sequence[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Re-evaluate a run over each strategy's settings grid from its stored scores.

    Updates ``sweep.json`` and the report; returns the whole sweep.

    Raises:
        ValueError: If the folder is not a run folder.
    """
    folder = RunDir(run_dir)
    if not folder.config_path.exists():
        raise ValueError(f"{folder.config_path}: not a run folder (no config.yaml)")
    cfg = RunConfig.from_file(folder.config_path)
    pairs = evaluated_pairs(folder)
    result = folder.sweep()
    for name in strategies or cfg.strategies:
        strat = cfg.strategy(name)
        if strat.grid():
            result[name] = sweep(strat, pairs, strat.collect_scores(folder.scores), seed=cfg.seed)
    write_json_atomic(folder.sweep_path, result)
    write_report(folder)
    return result


def redraw(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Re-draw the figures of a run folder (or of a study folder) from its stored results.

    Raises:
        ValueError: If the folder holds neither a run's ``results.json`` nor a ``study.json``.
    """
    folder = RunDir(run_dir)
    if (folder.root / "study.json").exists():
        return fig_study(folder.root / "study.json", out or folder.figures_dir)
    if not folder.results_path.exists():
        raise ValueError(f"{folder.results_path}: missing (run `poser-lens run` first)")
    folder.results()  # a run's results, or one line naming the file
    check_writable(out or folder.figures_dir, "figures folder")
    written = make_figures(folder, out)
    if not written:
        raise ValueError(f"{folder.results_path}: no figure to draw (no strategy results)")
    return written


def study_job(
    cfg: StudyConfig | None = None, out: str | Path = "runs/study", *, progress: bool = True
) -> Path:
    """Build every zoo of the study, run every strategy on each, write the spread.

    Resumable: zoos are cached by content hash and each run folder resumes from its stored
    scores, so an interrupted study picks up where it stopped. Writes ``study_config.json``,
    one run folder per zoo (``<recipe>-<i>/``, with its report), ``study.json``, ``study.md``
    and ``figures/``.

    Returns:
        The study folder.
    """
    cfg = cfg if cfg is not None else StudyConfig()
    root = Path(out)
    check_writable(root, "study folder")
    write_json_atomic(root / "study_config.json", asdict(cfg))
    runs: dict[str, dict[str, Any]] = {}
    for recipe, index, seeds in cfg.plan():
        zoo_cfg: ZooConfig = replace(zoo_config(recipe, index, seeds=seeds), workers=cfg.workers)
        zoo = zoo_cfg.build(progress=progress)
        run_cfg = RunConfig(
            strategies=cfg.strategies,
            seeds=seeds,
            seed=cfg.seed,
            zoo_dir=str(zoo),
            workers=cfg.workers,
            sweep=False,
            figures=False,
        )
        folder = main_job(run_cfg, root / f"{recipe}-{index}", progress=progress)
        runs[f"{recipe}-{index}"] = read_json(folder.results_path)
    study = summarise(runs)
    write_json_atomic(root / "study.json", study)
    write_text_atomic(root / "study.md", render_study(study))
    fig_study(root / "study.json", root / "figures")
    return root


@dataclass(frozen=True)
class BehaviourOutcome:
    """What :func:`behaviour_job` found.

    Attributes:
        folder: Where it wrote ``results.json`` and ``gaps.csv``.
        rows: One row per model and framing (``GapReport.to_row``).
        agreement: Proxy-vs-judge agreement on the hand set (chat models only).
    """

    folder: Path
    rows: list[dict[str, Any]]
    agreement: Any = None


def behaviour_job(
    model: str,
    *,
    out: str | Path | None = None,
    zoo: str | Path | None = None,
    progress: bool = True,
    **settings: Any,
) -> BehaviourOutcome:
    """The compliance-gap check (``poser-lens behaviour``) of one model.

    A tiny zoo model gets its gap from the zoo's stored scenarios; a chat model (``smol``...)
    the full check (:func:`poser_lens.behaviour.run_check`, ``settings`` being
    :class:`~poser_lens.behaviour.BehaviourConfig` fields).
    """
    kind, target = parse_spec(model)
    folder = Path(out) if out is not None else default_behaviour_dir(model)
    check_device(settings.get("device", "cpu"))
    check_writable(folder, "output folder")
    agreement = None
    if kind == "tiny":
        root = Path(zoo) if zoo is not None else ZooConfig().build(progress=progress)
        report = zoo_gap_report(root, target, seed=settings.get("seed", 0))
        rows = [report.to_row()]
        write_json_atomic(folder / "config.json", {"model": model, "zoo": str(root)})
        write_json_atomic(folder / "results.json", {"reports": [asdict(report)]})
    else:
        result = run_check(BehaviourConfig(model=model, **settings), folder, progress=progress)
        rows = [r.to_row() for r in result.reports]
        agreement = result.agreement
    header = ",".join(rows[0])
    lines = [",".join(str(v) for v in r.values()) for r in rows]
    write_text_atomic(folder / "gaps.csv", "\n".join([header, *lines]) + "\n")
    return BehaviourOutcome(folder, rows, agreement)


def default_behaviour_dir(model: str) -> Path:
    """``runs/behaviour-<model>`` (the spec made a folder name)."""
    return Path("runs") / f"behaviour-{model.replace(':', '-').replace('/', '_')}"


def cost_job(cfg: CostConfig | None = None) -> CostReport:
    """The paper-scale cost model (``poser-lens cost``): per strategy and in total.

    Example:
        >>> cost_job(CostConfig(gpus=2)).n_models
        36
    """
    return cost_report(cfg)


__all__ = [
    "BehaviourOutcome",
    "behaviour_job",
    "cost_job",
    "default_run_dir",
    "evaluated_pairs",
    "main_job",
    "redraw",
    "removal_job",
    "study_job",
    "sweep_job",
]
