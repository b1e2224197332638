"""The study over a testbed (:func:`run_removal`): every job, here, in workers or Ray tasks.

Resumable: a job whose record (same settings) is stored is skipped. Results go to
``<run>/removal/`` (see :mod:`poser_lens.removal.results`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from poser_lens._io import write_text_atomic
from poser_lens._pool import connect_ray, fan_out, process_memo
from poser_lens.config import normalised
from poser_lens.data.poser import ModelPair
from poser_lens.removal.config import RemovalConfig
from poser_lens.removal.jobs import Job, group_jobs, plan_jobs
from poser_lens.removal.results import summarise, write_outputs
from poser_lens.removal.study import Study, detectors_before, make_study, removal_dir, run_jobs
from poser_lens.runs import RunDir
from poser_lens.testbeds import Testbed, TestbedConfig, make_testbed, select_pairs


def _worker(
    root: str,
    testbed_cfg: dict[str, Any],
    strategy_configs: dict[str, Any],
    cfg_dict: dict[str, Any],
    pairs: list[tuple[str, str, str]],
    jobs: list[tuple[str, str, str]],
) -> tuple[int, dict[str, dict[str, float]]]:
    """Run a chunk of jobs in a worker process (its study is built once per process).

    Returns:
        The number of jobs done, and their timings (job key -> seconds).
    """
    tb_cfg = TestbedConfig.from_dict(testbed_cfg)
    cfg = RemovalConfig.from_dict(cfg_dict)

    def build() -> Study:
        ps = [ModelPair(a, f, v) for a, f, v in pairs]
        return make_study(make_testbed(tb_cfg, progress=False), ps, cfg, strategy_configs)

    key = json.dumps([testbed_cfg, strategy_configs, cfg_dict, pairs], sort_keys=True)
    study = process_memo("removal", key, build)
    run = RunDir(root)
    for model, method, _ in jobs:
        if method == "before":
            detectors_before(run, study, model, cfg)
    group = [Job(m, meth, lab) for m, meth, lab in jobs if meth != "before"]
    timings: dict[str, dict[str, float]] = {}
    if group:
        run_jobs(run, study, group, cfg, timings=timings)
    return len(jobs), timings


def run_removal(
    run: RunDir | str | Path,
    cfg: RemovalConfig = RemovalConfig(),  # noqa: B008 (frozen: as immutable as a literal)
    *,
    testbed_config: TestbedConfig | None = None,
    strategy_configs: Mapping[str, Mapping[str, Any]] | None = None,
    testbed: Testbed | None = None,
    pairs: Sequence[ModelPair] | None = None,
    workers: int = 1,
    ray: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The removal study: every job, then the summary; writes ``<run>/removal/``.

    Resumable: a job whose record (same settings) is stored is skipped, so a re-run after an
    interruption only does what is missing.

    Args:
        run: The run folder.
        cfg: Removal settings.
        testbed_config: The testbed (and device, models) to treat; default settings when
            None.
        strategy_configs: Strategy name -> overrides of its config (the run's), for the
            detectors.
        testbed: The testbed of ``testbed_config``, if already made (else made here).
        pairs: The pairs whose models are treated (default: all of the testbed's, restricted
            by ``testbed_config.models``).
        workers: Processes (one thread each); 1 runs in this process.
        ray: Run the jobs as Ray tasks instead (one model's jobs per task, one GPU each when
            the testbed's device is ``cuda``): ``local``, ``auto`` or a cluster's address
            (:func:`poser_lens._pool.connect_ray`). None: ``workers`` local processes.
        progress: Show progress bars.

    Returns:
        The summary (also written to ``removal/summary.json``).
    """
    import yaml
    from tqdm.auto import tqdm

    if ray is not None:
        connect_ray(ray)  # no Ray, or no cluster: fail before any work
    run = run if isinstance(run, RunDir) else RunDir(run)
    tb_cfg = testbed_config if testbed_config is not None else TestbedConfig()
    configs = normalised(dict(strategy_configs or {}))
    t0 = time.perf_counter()
    if testbed is None:
        testbed = make_testbed(tb_cfg, progress=progress)
    if pairs is None:
        pairs = select_pairs(testbed.pairs, replace(tb_cfg, pairs=None))
    study = make_study(testbed, pairs, cfg, configs)
    models = sorted(study.families)
    jobs = plan_jobs(models, cfg)
    treated = {j.model for j in jobs if j.role == "treatment"}
    partners = {p.aligned for p in pairs if p.misaligned in treated}
    need_before = sorted(treated | partners | {j.model for j in jobs})
    out = removal_dir(run)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    bar = tqdm(total=len(need_before) + len(jobs), desc="removal", disable=not progress)
    timings: dict[str, dict[str, float]] = {}
    if ray is None and workers <= 1:
        for m in need_before:
            detectors_before(run, study, m, cfg)
            bar.update(1)
        for group in group_jobs(jobs):
            run_jobs(run, study, group, cfg, timings=timings)
            bar.update(len(group))
    else:
        # Workers reuse the built zoo instead of rebuilding it.
        tb_w = replace(tb_cfg, zoo_dir=testbed.info.get("zoo", tb_cfg.zoo_dir))
        args = (
            str(run.root),
            tb_w.to_dict(),
            configs,
            cfg.to_dict(),
            [(p.aligned, p.misaligned, p.valid_data) for p in pairs],
        )
        before = [[(m, "before", "")] for m in need_before]
        treat = [[(j.model, j.method, j.labels) for j in g] for g in group_jobs(jobs)]
        for stage in (before, treat):
            tasks = [(*args, c) for c in stage]
            for _, (n_done, spent) in fan_out(
                _worker, tasks, workers=workers, ray=ray, device=tb_cfg.device
            ):
                timings.update(spent)
                bar.update(n_done)
    bar.close()
    summary = summarise(run, pairs, jobs, study.detectors, cfg)
    write_outputs(run, summary)
    run.record_timings("removal", {"seconds": round(time.perf_counter() - t0, 1), "jobs": timings})
    return summary
