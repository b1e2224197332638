"""The main job: score every model with every strategy, evaluate all pairs, write a run folder.

One run, as data flows::

    zoo (built or reused, cached by content hash) -> valid prompts per family, pairs
      -> for each model: for each strategy: for each of its families: score_model
         (stored as scores/<strategy>/<model>.json; a re-run skips stored scores)
      -> for each pair: verdict -> accuracy, CI, per family -> results.json, sweep.json
      -> report.md, figures/

Per-model scores are the unit of work and of caching (36 models x strategies, never 324 pairs
x 2 models). Models are scored in worker processes (one thread each), or one model per Ray task
with ``ray`` set (:func:`poser_lens._pool.fan_out`), each model loaded once for all
strategies, with a memo shared by the strategies of one (model, family).

This module is the job alone (score -> evaluate -> write ``results.json``); the testbed comes
from :mod:`poser_lens.testbeds`, and :func:`poser_lens.pipeline.main_job` wires the whole job
(with the removal study, figures and report) for the CLI.

Example:
    >>> cfg = RunConfig(strategies=("random",), pairs=4)
    >>> cfg.strategies, cfg.testbed
    (('random',), 'tiny')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from poser_lens._io import check_writable, removed_on_error, write_json_atomic, write_text_atomic
from poser_lens._pool import connect_ray, fan_out, process_memo
from poser_lens.config import (
    Config,
    ConfigError,
    Device,
    DType,
    NonEmpty,
    PositiveFloat,
    PositiveInt,
    config_from_dict,
    normalised,
)
from poser_lens.data.poser import ModelPair
from poser_lens.evaluation import (
    MATCH_TOLERANCE,
    SingleModelResult,
    confound_controls,
    evaluate,
    single_model,
    sweep,
    verdict_rows,
)
from poser_lens.runs import RunDir
from poser_lens.strategies import STRATEGY_NAMES, StrategyName, get_strategy, strategy_class
from poser_lens.strategies.base import ModelContext, Strategy
from poser_lens.testbeds import (
    ModelNames,
    Testbed,
    TestbedConfig,
    TestbedName,
    check_testbed,
    make_testbed,
    model_families,
    select_pairs,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig(Config):
    """Every setting of a run (saved as ``config.yaml`` in the run folder).

    The testbed's settings (``testbed`` ... ``data``, ``models``, ``pairs``, ``seed``) are
    handed to :mod:`poser_lens.testbeds` by :meth:`testbed_config`.

    Attributes:
        testbed: ``tiny`` (the embedded zoo), ``smol`` (SmolLM2 LoRA personas) or ``poser``.
        strategies: Strategy names, in report order (``ensemble`` reads the others' scores).
        pairs: Evaluate only this many pairs (a seeded random subset); None = all.
        models: Restrict to pairs whose two models are both in this list; None = all.
        seed: Seeds pair order, tie coins, bootstraps and the strategies' randomness.
        seeds: Tiny zoo: models per persona (6 gives Poser's 36 models and 324 pairs).
        zoo_config: Tiny zoo: a YAML/JSON file of zoo settings (see ``poser-lens zoo build``).
        zoo_dir: Tiny zoo: use this built zoo folder instead of the cached default.
        workers: Scoring processes (one thread each; 1 = in-process).
        ray: Score the models as Ray tasks instead (one model per task, one GPU each when
            ``device`` is ``cuda``): ``local`` (a new Ray instance on this machine), ``auto``
            or a cluster's address (:func:`poser_lens._pool.connect_ray`); the run folder must
            be on a filesystem every node shares. None: ``workers`` local processes.
        device: Where models run (``cuda`` for real models).
        dtype: Model dtype name (``float32``; ``bfloat16`` for 13B models and the smol zoo
            where the CPU computes it natively).
        strategy_dtypes: Strategy name -> the dtype its scores are computed in when not
            ``dtype`` (the model is loaded again in it): a strategy whose verdicts change
            with precision stays in float32 (e.g. ``{"s3_full": "float32"}``).
        sweep: Also evaluate every strategy over its settings grid (sensitivity).
        figures: Also draw the figures.
        strategy_configs: Strategy name -> overrides of its config (e.g. ``{"s2_noise":
            {"n_prompts": 50}}``).
        models_dir: Poser testbed: folder of HF checkpoint folders, one per model name
            (``DIR/<persona>-<seed>`` or ``DIR/models/together/<persona>-<seed>``).
        data: Poser testbed: the Poser checkout (or its ``data/`` folder) holding
            ``data/benchmark/*.json`` and ``model_pairs.json``.
        match_tolerance: Confound control: a prompt is confidence-matched for a pair when
            the two models' answer log-odds differ by less than this.
        removal: Also run the removal study (:mod:`poser_lens.removal`, default settings)
            into ``removal/`` and report it (:func:`poser_lens.pipeline.main_job`); it does
            not change detection results, so it is not part of :meth:`key`.
    """

    KEY_EXCLUDE = ("workers", "ray", "device", "figures", "sweep", "removal")
    KEY_LENGTH = 10

    testbed: TestbedName = "tiny"
    strategies: Annotated[tuple[StrategyName, ...], NonEmpty()] = STRATEGY_NAMES
    pairs: PositiveInt | None = None
    models: ModelNames | None = None
    seed: int = 0
    seeds: PositiveInt = 6
    zoo_config: str | None = None
    zoo_dir: str | None = None
    workers: PositiveInt = 2
    ray: str | None = None
    device: Device = "cpu"
    dtype: DType = "float32"
    strategy_dtypes: dict[StrategyName, DType] = field(default_factory=dict)
    sweep: bool = True
    figures: bool = True
    strategy_configs: dict[StrategyName, dict[str, Any]] = field(default_factory=dict)
    models_dir: str | None = None
    data: str | None = None
    removal: bool = False
    match_tolerance: PositiveFloat = MATCH_TOLERANCE

    def check(self) -> None:
        """Every strategy config builds (its settings checked), and the testbed settings."""
        for name in self.strategy_configs:
            self.strategy_config(name)
        self.testbed_config()
        if self.ray is not None and not self.ray.strip():
            raise ConfigError("ray", "expected local, auto or a Ray cluster's address, got ''")

    def strategy_config(self, name: str) -> Any:
        """The config of strategy ``name``: its defaults with ``strategy_configs[name]``.

        Raises:
            ConfigError: Naming the bad setting (``strategy_configs.<name>.<setting>``).
        """
        cls = strategy_class(name)
        try:
            return config_from_dict(cls.config_cls, self.strategy_configs.get(name, {}))
        except ConfigError as err:
            raise err.under(f"strategy_configs.{name}") from None
        except ValueError as err:  # an unknown setting
            raise ConfigError(f"strategy_configs.{name}", str(err)) from None

    def strategy(self, name: str) -> Strategy:
        """The configured strategy ``name`` (reading other strategies' scores, as configured)."""
        return get_strategy(name, self.strategy_config(name)).with_strategies(self.strategy)

    def key_dict(self) -> dict[str, Any]:
        """The hashed settings (they name the default run folder)."""
        d = super().key_dict()
        for k in ("models_dir", "data"):  # unset: keep the keys of runs made before them
            if d[k] is None:
                d.pop(k)
        if not d["strategy_dtypes"]:
            d.pop("strategy_dtypes")
        return d

    def dtype_of(self, name: str) -> str:
        """The dtype strategy ``name`` is scored in (``strategy_dtypes``, else ``dtype``).

        Example:
            >>> cfg = RunConfig(dtype="bfloat16", strategy_dtypes={"s3_full": "float32"})
            >>> cfg.dtype_of("s3_full"), cfg.dtype_of("s2_noise")
            ('float32', 'bfloat16')
        """
        return self.strategy_dtypes.get(name, self.dtype)

    def testbed_config(self) -> TestbedConfig:
        """The testbed settings of this run."""
        return TestbedConfig(
            testbed=self.testbed,
            seeds=self.seeds,
            zoo_config=self.zoo_config,
            zoo_dir=self.zoo_dir,
            device=self.device,
            dtype=self.dtype,
            models_dir=self.models_dir,
            data=self.data,
            models=self.models,
            pairs=self.pairs,
            seed=self.seed,
            concepts="s4_concepts" in self.strategies,
        )


# ----------------------------------------------------------------------------- scoring


def _needs(
    run: RunDir,
    strat: Strategy,
    model: str,
    families: Sequence[str],
    tag: str,
    dtype: str = "float32",
) -> bool:
    """Whether a model's score of a strategy is missing, stale or unreadable.

    Stale: made with another config, testbed or precision (a record without ``dtype`` was
    made in float32). Unreadable (a corrupt file): reported, and scored again.
    """
    if not run.has_score(strat.name, model):
        return True
    try:
        rec = run.score_record(strat.name, model)
    except ValueError as err:
        logger.warning("%s; scoring it again", err)
        return True
    if not isinstance(rec, dict):
        logger.warning(
            "%s: not a score record; scoring it again", run.score_path(strat.name, model)
        )
        return True
    return (
        rec.get("config") != normalised(strat.config_dict())
        or rec.get("testbed") != tag
        or rec.get("dtype", "float32") != dtype
        or any(f not in rec.get("families", {}) for f in families)
    )


def score_one_model(
    run: RunDir,
    cfg: RunConfig,
    testbed: Testbed,
    model_name: str,
    families: Sequence[str],
    tag: str,
) -> dict[str, float]:
    """Score one model with every configured strategy that lacks a stored score.

    The model is loaded once per precision its strategies need (:meth:`RunConfig.dtype_of`):
    the run's, then any other in ``cfg.strategy_dtypes``. A score in a precision other than
    float32 records it (``dtype``).

    Returns:
        Strategy -> seconds spent (for ``timings.json``; score files hold no timings).
    """
    strategies = [cfg.strategy(n) for n in scored_strategies(cfg) if strategy_class(n).needs_model]
    todo = [
        s for s in strategies if _needs(run, s, model_name, families, tag, cfg.dtype_of(s.name))
    ]
    seconds: dict[str, float] = {}
    # The run's precision first, so a run without strategy_dtypes loads the model once.
    for dtype in sorted({cfg.dtype_of(s.name) for s in todo}, key=lambda d: d != cfg.dtype):
        group = [s for s in todo if cfg.dtype_of(s.name) == dtype]
        if dtype == cfg.dtype:
            model, tokenizer = testbed.load(model_name)
        else:
            model, tokenizer = testbed.load(model_name, dtype=dtype)
        contexts = {
            fam: ModelContext(
                model_name,
                model,
                tokenizer,
                fam,
                testbed.valid[fam],
                testbed.concepts,
                seed=cfg.seed,
            )
            for fam in families
        }
        for strat in group:
            t0 = time.perf_counter()
            scores = {fam: strat.score_model(contexts[fam]) for fam in families}
            seconds[strat.name] = time.perf_counter() - t0
            record = {
                "model": model_name,
                "strategy": strat.name,
                "testbed": tag,
                "config": normalised(strat.config_dict()),
                **({"dtype": dtype} if dtype != "float32" else {}),
                "families": scores,
            }
            run.write_score(strat.name, model_name, record)
        del model, tokenizer, contexts
        if testbed.release is not None:
            testbed.release()
    return seconds


def _worker_score(
    root: str, cfg_dict: dict[str, Any], jobs: list[tuple[str, list[str]]], tag: str
) -> dict[str, dict[str, float]]:
    """Score a chunk of models in a worker process (its testbed is built once per process).

    Returns:
        Model -> strategy -> seconds.
    """
    cfg = config_from_dict(RunConfig, cfg_dict)
    tb_cfg = cfg.testbed_config()
    testbed = process_memo("runner", tb_cfg.key(), lambda: make_testbed(tb_cfg, progress=False))
    return {
        name: score_one_model(RunDir(root), cfg, testbed, name, fams, tag) for name, fams in jobs
    }


def score_models(
    run: RunDir,
    cfg: RunConfig,
    testbed: Testbed,
    pairs: Sequence[ModelPair],
    *,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Score every model of the pairs (skipping stored scores).

    In this process with one worker, else in worker processes of a few models each, or, with
    ``cfg.ray``, one Ray task per model.

    Returns:
        Strategy -> model -> seconds, for the scores made by this call.
    """
    from tqdm.auto import tqdm

    # A testbed's cap (one process for models that fill the GPU) binds local workers, which
    # share this machine's GPU; each Ray task has a GPU of its own.
    if testbed.max_workers is not None and cfg.workers > testbed.max_workers:
        cfg = replace(cfg, workers=testbed.max_workers)
    fams = model_families(pairs)
    tag = testbed.tag(cfg.testbed_config())
    bar = tqdm(total=len(fams), desc="scoring models", disable=not progress)
    seconds: dict[str, dict[str, float]] = {}

    def add(model: str, spent: Mapping[str, float]) -> None:
        for strategy, s in spent.items():
            seconds.setdefault(strategy, {})[model] = round(s, 3)

    if cfg.ray is None and (cfg.workers <= 1 or len(fams) <= 1):
        for name, families in fams.items():
            add(name, score_one_model(run, cfg, testbed, name, families, tag))
            bar.update(1)
    else:
        # Workers reuse the built zoo instead of rebuilding it.
        worker_cfg = replace(cfg, zoo_dir=testbed.info.get("zoo", cfg.zoo_dir))
        items = list(fams.items())
        # Ray: one model per task (the cluster balances them); local: 3 chunks per worker.
        n = len(items) if cfg.ray is not None else cfg.workers * 3
        chunks = [c for c in (items[i::n] for i in range(n)) if c]
        tasks = [(str(run.root), asdict(worker_cfg), chunk, tag) for chunk in chunks]
        pool = fan_out(_worker_score, tasks, workers=cfg.workers, ray=cfg.ray, device=cfg.device)
        for i, by_model in pool:
            for name, spent in by_model.items():
                add(name, spent)
            bar.update(len(chunks[i]))
    bar.close()
    return seconds


#: The strategy whose per-prompt confidences the confound controls read (always scored).
CONFIDENCE = "confidence_baseline"


def scored_strategies(cfg: RunConfig) -> tuple[str, ...]:
    """The strategies a run scores: the configured ones plus the confidence baseline.

    Example:
        >>> scored_strategies(RunConfig(strategies=("random",)))
        ('random', 'confidence_baseline')
    """
    return cfg.strategies if CONFIDENCE in cfg.strategies else (*cfg.strategies, CONFIDENCE)


# ----------------------------------------------------------------------------- the run


def evaluate_run(
    run: RunDir,
    cfg: RunConfig,
    pairs: Sequence[ModelPair],
    *,
    do_sweep: bool,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every configured strategy from stored scores; write results, sweep, verdicts."""
    import csv
    import io

    from tqdm.auto import tqdm

    results: dict[str, Any] = {}
    sweeps: dict[str, Any] = {}
    conf_strat = cfg.strategy(CONFIDENCE)
    conf_scores = run.scores(CONFIDENCE)
    conf_res = evaluate(conf_strat, pairs, conf_scores, seed=cfg.seed)
    conf_single = single_model(conf_strat, pairs, conf_scores, seed=cfg.seed)
    conf_by_model = {**conf_single.aligned, **conf_single.fakers}
    for name in tqdm(cfg.strategies, desc="evaluating", disable=not progress):
        strat = cfg.strategy(name)
        scores = strat.collect_scores(run.scores)
        res = conf_res if name == CONFIDENCE else evaluate(strat, pairs, scores, seed=cfg.seed)
        results[name] = {
            "title": strat.title,
            **res.summary(),
            "paper_accuracy": strat.paper_accuracy,
            "confound": confound_controls(
                strat,
                res,
                conf_res,
                scores,
                conf_scores,
                tolerance=cfg.match_tolerance,
                seed=cfg.seed,
            ),
        }
        results[name]["single_model"] = single_model(
            strat, pairs, scores, confidence=conf_by_model, seed=cfg.seed
        ).summary()
        variants = {
            label: {
                **{
                    k: v
                    for k, v in evaluate(strat, pairs, scores, seed=cfg.seed, settings=change)
                    .summary()
                    .items()
                    if k != "per_family"
                },
                "single_model": _auroc_only(
                    single_model(strat, pairs, scores, settings=change, seed=cfg.seed)
                ),
            }
            for label, change in strat.confound_variants().items()
        }
        if variants:
            results[name]["variants"] = variants
        rows = verdict_rows(res)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(run.root / "verdicts" / f"{name}.csv", buf.getvalue())
        if do_sweep and strat.grid():
            sweeps[name] = sweep(strat, pairs, scores, seed=cfg.seed)
    if do_sweep:
        write_json_atomic(run.sweep_path, sweeps)
    return results


def _auroc_only(res: SingleModelResult) -> dict[str, Any]:
    """The AUROC over models and its interval of a single-model result (or why there is none)."""
    out = res.summary()
    return {k: out[k] for k in ("available", "reason", "auroc", "ci95") if k in out}


def confidence_table(
    run: RunDir, cfg: RunConfig, pairs: Sequence[ModelPair]
) -> dict[str, dict[str, Any]]:
    """The compare-confidence baseline by each statistic, on the prompts the run scored.

    Returns:
        Statistic -> ``{"accuracy", "ci95" (models resampled), "ci95_pairs", "n_pairs"}``.
    """
    strat = cfg.strategy(CONFIDENCE)
    scores = run.scores(CONFIDENCE)
    out = {}
    for stat in strat.grid()["statistic"]:
        res = evaluate(strat, pairs, scores, seed=cfg.seed, settings={"statistic": stat})
        out[stat] = {k: v for k, v in res.summary().items() if k != "settings"}
    return out


def preflight(cfg: RunConfig, out: str | Path | None = None) -> None:
    """Check, in a moment and before any work, what a run needs from this machine.

    The settings themselves were checked when ``cfg`` was built; this checks the testbed's
    inputs (:func:`~poser_lens.testbeds.check_testbed`: the device, a built ``zoo_dir``, a
    writable zoo cache...) and that the run folder can be written.

    Raises:
        ValueError: One line naming what is missing (``OSError`` for a missing folder).
    """
    check_testbed(cfg.testbed_config())
    check_writable(out if out is not None else default_run_dir(cfg), "run folder")


def _has_scores(root: Path) -> bool:
    """Whether a run folder holds a stored score (work a re-run resumes from)."""
    return any((root / "scores").glob("*/*.json"))


def run(
    cfg: RunConfig | None = None,
    out: str | Path | None = None,
    *,
    testbed: Testbed | None = None,
    progress: bool = True,
) -> RunDir:
    """The run alone: score every model (resuming), evaluate every pair, write the results.

    :func:`poser_lens.pipeline.main_job` (``poser-lens run``) adds the removal study, the
    figures and the report.

    Args:
        cfg: Run settings.
        out: Run folder (default ``runs/<testbed>-<config hash>``, so a re-run resumes).
        testbed: The testbed of ``cfg``, if already made (else checked, :func:`preflight`,
            and made here).
        progress: Show progress bars.

    Returns:
        The run folder, holding ``config.yaml``, ``scores/``, ``results.json``, ``sweep.json``,
        ``verdicts/`` and ``timings.json``. A run that fails before it stored any score leaves
        no folder behind.
    """
    cfg = cfg if cfg is not None else RunConfig()
    if cfg.ray is not None:
        connect_ray(cfg.ray)  # no Ray, or no cluster: fail before any work
    folder = RunDir(out if out is not None else default_run_dir(cfg))
    if testbed is None:
        preflight(cfg, folder.root)
        testbed = make_testbed(cfg.testbed_config(), progress=progress)
    pairs = select_pairs(testbed.pairs, cfg.testbed_config())
    with removed_on_error(folder.root, keep=_has_scores):
        _run(folder, cfg, testbed, pairs, progress=progress)
    return folder


def _run(
    folder: RunDir,
    cfg: RunConfig,
    testbed: Testbed,
    pairs: Sequence[ModelPair],
    *,
    progress: bool,
) -> None:
    """Score, evaluate and write the results of :func:`run` into ``folder``."""
    import yaml

    write_text_atomic(folder.config_path, yaml.safe_dump(normalised(asdict(cfg)), sort_keys=False))
    t1 = time.perf_counter()
    seconds = score_models(folder, cfg, testbed, pairs, progress=progress)
    t_score = time.perf_counter() - t1
    t2 = time.perf_counter()
    results = evaluate_run(folder, cfg, pairs, do_sweep=cfg.sweep, progress=progress)
    t_eval = time.perf_counter() - t2
    record = {
        "testbed": cfg.testbed,
        "precision": cfg.dtype,
        **testbed.info,
        "n_pairs": len(pairs),
        "n_models": len(model_families(pairs)),
        "confidence": confidence_table(folder, cfg, pairs),
        "strategies": results,
    }
    write_json_atomic(folder.results_path, record)
    folder.record_timings(
        "run",
        {
            "testbed": round(testbed.build_seconds, 1),
            "scoring": round(t_score, 1),
            "evaluation": round(t_eval, 1),
            "scoring_by_strategy_cpu": {
                k: round(sum(v.values()), 1) for k, v in sorted(seconds.items())
            },
        },
    )
    folder.record_timings("scores", seconds)


def default_run_dir(cfg: RunConfig) -> Path:
    """``runs/<testbed>-<config hash>``: a re-run of the same settings resumes there."""
    return Path("runs") / f"{cfg.testbed}-{cfg.key()}"
