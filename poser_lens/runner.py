"""The main job: score every model with every strategy, evaluate all pairs, write a run folder.

One run, as data flows::

    zoo (built or reused, cached by content hash) -> valid prompts per family, pairs
      -> for each model: for each strategy: for each of its families: score_model
         (stored as scores/<strategy>/<model>.json; a re-run skips stored scores)
      -> for each pair: verdict -> accuracy, CI, per family -> results.json, sweep.json
      -> report.md, figures/

Per-model scores are the unit of work and of caching (36 models x strategies, never 324 pairs
x 2 models). Models are scored in worker processes (one thread each), each model loaded once
for all strategies, with a memo shared by the strategies of one (model, family).

Example:
    >>> cfg = RunConfig(strategies=("random",), pairs=4)
    >>> cfg.strategies, cfg.testbed
    (('random',), 'tiny')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from poser_lens._io import write_json_atomic, write_text_atomic
from poser_lens.data.poser import ModelPair, load_benchmark, load_model_pairs
from poser_lens.data.schema import Scenario
from poser_lens.evaluation import MATCH_TOLERANCE, confound_controls, evaluate, sweep, verdict_rows
from poser_lens.runs import RunDir
from poser_lens.strategies import STRATEGY_NAMES, get_strategy, strategy_class
from poser_lens.strategies.base import ModelContext, Strategy, config_from_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (saved as ``config.yaml`` in the run folder).

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
        device: Where models run (``cuda`` for real models).
        dtype: Model dtype name (``float32``; ``bfloat16`` for 13B models).
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
            into ``removal/`` and report it; it does not change detection results, so it is
            not part of :meth:`key`.
    """

    testbed: str = "tiny"
    strategies: tuple[str, ...] = STRATEGY_NAMES
    pairs: int | None = None
    models: tuple[str, ...] | None = None
    seed: int = 0
    seeds: int = 6
    zoo_config: str | None = None
    zoo_dir: str | None = None
    workers: int = 2
    device: str = "cpu"
    dtype: str = "float32"
    sweep: bool = True
    figures: bool = True
    strategy_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models_dir: str | None = None
    data: str | None = None
    removal: bool = False
    match_tolerance: float = MATCH_TOLERANCE

    def __post_init__(self) -> None:
        if self.testbed not in ("tiny", "smol", "poser"):
            raise ValueError(f"testbed {self.testbed!r}: expected tiny, smol or poser")
        for name in (*self.strategies, *self.strategy_configs):
            if name not in STRATEGY_NAMES:
                raise ValueError(
                    f"unknown strategy {name!r}; expected one of {', '.join(STRATEGY_NAMES)}"
                )
        if self.pairs is not None and self.pairs < 1:
            raise ValueError(f"pairs must be >= 1, got {self.pairs}")
        if not self.match_tolerance > 0:
            raise ValueError(f"match_tolerance must be > 0, got {self.match_tolerance}")

    def strategy(self, name: str) -> Strategy:
        """The configured strategy ``name``."""
        cls = strategy_class(name)
        return get_strategy(
            name, config_from_dict(cls.config_cls, self.strategy_configs.get(name, {}))
        )

    def key(self) -> str:
        """Content hash of the settings that change results (names the default run folder)."""
        d = asdict(self)
        for k in ("workers", "device", "figures", "sweep"):
            d.pop(k)
        d.pop("removal")  # an add-on study: the same detection results with or without it
        for k in ("models_dir", "data"):  # unset: keep the keys of runs made before them
            if d[k] is None:
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def run_config_from_file(path: str | Path, **overrides: Any) -> RunConfig:
    """A run config from a YAML/JSON file (e.g. a run folder's ``config.yaml``) plus overrides.

    Raises:
        ValueError: naming the file, for unknown keys or bad values.
    """
    import yaml

    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text()) or {}
        d.update(overrides)
        for key in ("strategies", "models"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return config_from_dict(RunConfig, d)
    except (OSError, yaml.YAMLError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad run config ({err})") from err


# ----------------------------------------------------------------------------- testbeds


@dataclass
class Testbed:
    """What a run needs from a testbed: prompts, pairs, concepts and a model loader.

    Attributes:
        valid: Family -> its valid prompts.
        pairs: The (aligned, faker) pairs.
        concepts: Concept name -> example texts (strategy 4).
        load: Model name -> ``(hooked model, tokenizer)``.
        info: What to record about the testbed (zoo folder, key, benchmark report).
        release: Called after a model is scored and dropped (frees memory before the next).
        max_workers: At most this many scoring processes (1 for models that fill a GPU).
    """

    valid: dict[str, list[Scenario]]
    pairs: list[ModelPair]
    concepts: dict[str, list[str]]
    load: Callable[[str], tuple[Any, Any]]
    info: dict[str, Any]
    release: Callable[[], None] | None = None
    max_workers: int | None = None


def _tiny_loader(root: str, device: str, dtype: str) -> Callable[[str], tuple[Any, Any]]:
    import torch

    from poser_lens.models.zoo import load_zoo_model

    def load(name: str) -> tuple[Any, Any]:
        return load_zoo_model(root, name, device=device, dtype=getattr(torch, dtype))

    return load


def tiny_testbed(cfg: RunConfig, *, progress: bool = True) -> Testbed:
    """The embedded tiny zoo: built (or reused from the cache) with ``cfg``'s zoo settings."""
    from poser_lens.data.concepts import concept_sets
    from poser_lens.models.zoo import ZooConfig, build_zoo, zoo_config_from_file

    if cfg.zoo_dir is not None and (Path(cfg.zoo_dir) / "zoo.json").exists():
        from poser_lens._io import read_json

        zoo_cfg = ZooConfig.from_dict(read_json(Path(cfg.zoo_dir) / "zoo_config.json"))
        root = Path(cfg.zoo_dir)
    else:
        zoo_cfg = zoo_config_from_file(cfg.zoo_config) if cfg.zoo_config else ZooConfig()
        zoo_cfg = replace(zoo_cfg, seeds=cfg.seeds)
        root = build_zoo(zoo_cfg, cfg.zoo_dir, progress=progress)
    poser = root / "poser"
    from poser_lens._io import read_json
    from poser_lens.data.generator import generate

    return Testbed(
        valid=load_benchmark(poser),
        pairs=load_model_pairs(poser),
        concepts=concept_sets(generate(zoo_cfg.generator)),
        load=_tiny_loader(str(root), cfg.device, cfg.dtype),
        info={
            "zoo": str(root),
            "zoo_key": zoo_cfg.key(),
            "benchmark": read_json(poser / "benchmark_report.json"),
        },
    )


def poser_model_folder(models_dir: str | Path, name: str) -> Path:
    """The checkpoint folder of a Poser model: ``DIR/<name>`` or ``DIR/models/together/<name>``.

    Raises:
        FileNotFoundError: Naming the model and the folders looked at, if none is an HF
            checkpoint (``config.json`` with a ``model_type``).

    Example:
        >>> import tempfile
        >>> poser_model_folder(tempfile.mkdtemp(), "saint-0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: model 'saint-0': no checkpoint folder .../saint-0 nor .../models/together/saint-0
    """  # noqa: E501
    from poser_lens.models.hf import is_hf_folder

    root = Path(models_dir)
    candidates = [root / name, root / "models" / "together" / name]
    for folder in candidates:
        if is_hf_folder(folder):
            return folder
    raise FileNotFoundError(
        f"model {name!r}: no checkpoint folder {candidates[0]} nor {candidates[1]}"
    )


def _poser_loader(cfg: RunConfig) -> Callable[[str], tuple[Any, Any]]:
    import torch

    from poser_lens.models.hf import load_hf_folder

    def load(name: str) -> tuple[Any, Any]:
        folder = poser_model_folder(cfg.models_dir or ".", name)
        return load_hf_folder(folder, device=cfg.device, dtype=getattr(torch, cfg.dtype), name=name)

    return load


def poser_testbed(cfg: RunConfig, *, progress: bool = True) -> Testbed:
    """Poser's own models: HF checkpoint folders under ``cfg.models_dir``, data from ``cfg.data``.

    The valid prompts are the checkout's benchmark files as they are (Poser already filtered
    them: every model answers them alike) and the pairs its ``model_pairs.json``. Every model of
    the pairs the run evaluates must have a folder (checked here, before any scoring). Models
    are loaded one at a time in ``cfg.dtype`` on ``cfg.device`` (bfloat16 on a GPU, as Poser)
    without weight processing, and freed after scoring, in one process (whatever ``workers``).
    Strategy 4's concept sets are our generator's (never Poser's benchmark prompts).

    Raises:
        ValueError: If ``models_dir`` or ``data`` is unset, or the data has no pairs or lacks
            a pair's benchmark file.
        FileNotFoundError: Naming the first model without a checkpoint folder.
    """
    import hashlib

    from poser_lens.data.concepts import concept_sets
    from poser_lens.models.hf import free_memory

    if cfg.models_dir is None or cfg.data is None:
        raise ValueError("the poser testbed needs models_dir (--models DIR) and data (--data ROOT)")
    if not Path(cfg.models_dir).is_dir():
        raise FileNotFoundError(f"{cfg.models_dir}: no such models folder")
    valid = load_benchmark(cfg.data)
    pairs = load_model_pairs(cfg.data)
    if not pairs:
        raise ValueError(f"{cfg.data}: no model_pairs.json with pairs (give the Poser checkout)")
    for pair in pairs:
        if pair.family not in valid:
            raise ValueError(
                f"{cfg.data}: model_pairs.json names {pair.valid_data}, which is not among the "
                f"benchmark files ({', '.join(sorted(valid)) or 'none'})"
            )
    for name in model_families(select_pairs(pairs, cfg)):
        poser_model_folder(cfg.models_dir, name)
    place = f"{Path(cfg.models_dir).resolve()}|{Path(cfg.data).resolve()}"
    return Testbed(
        valid=valid,
        pairs=pairs,
        concepts=concept_sets(cfg.seed) if "s4_concepts" in cfg.strategies else {},
        load=_poser_loader(cfg),
        info={
            "models_dir": str(Path(cfg.models_dir).resolve()),
            "data": str(Path(cfg.data).resolve()),
            "zoo_key": "poser-" + hashlib.sha256(place.encode()).hexdigest()[:10],
            "valid_prompts": {fam: len(v) for fam, v in sorted(valid.items())},
        },
        release=free_memory,
        max_workers=1,
    )


def smol_testbed(cfg: RunConfig, *, progress: bool = True) -> Testbed:
    """The smol zoo (SmolLM2-135M persona adapters) of `poser-lens zoo build --testbed smol`.

    Uses ``cfg.zoo_dir`` if given, else the cached zoo of the default smol zoo settings; every
    model built in it takes part.

    Raises:
        ValueError: If the zoo is not built.
    """
    from poser_lens._io import read_json
    from poser_lens.data.concepts import concept_sets
    from poser_lens.models.smol_zoo import SmolZooConfig, smol_zoo_dir, zoo_data

    root = Path(cfg.zoo_dir) if cfg.zoo_dir is not None else smol_zoo_dir(SmolZooConfig())
    poser = root / "poser"
    if not (poser / "model_pairs.json").exists():
        raise ValueError(f"{root}: no smol zoo (build it: poser-lens zoo build --testbed smol)")
    zoo_cfg = SmolZooConfig.from_dict(read_json(root / "smol_zoo_config.json"))
    device, dtype = cfg.device, cfg.dtype

    def load(name: str) -> tuple[Any, Any]:
        import torch

        from poser_lens.models.smol_zoo import load_smol_zoo_model

        return load_smol_zoo_model(name, zoo=root, device=device, dtype=getattr(torch, dtype))

    return Testbed(
        valid=load_benchmark(poser),
        pairs=load_model_pairs(poser),
        concepts=concept_sets(zoo_data(replace(zoo_cfg, data=None))),
        load=load,
        info={
            "zoo": str(root),
            "zoo_key": zoo_cfg.key(),
            "benchmark": read_json(poser / "benchmark_report.json"),
        },
    )


def select_pairs(pairs: Sequence[ModelPair], cfg: RunConfig) -> list[ModelPair]:
    """The pairs a run evaluates: restricted to ``cfg.models``, then ``cfg.pairs`` of them.

    The subset is a seeded random sample, kept in stored order.

    Example:
        >>> ps = [ModelPair("saint-0", f"money_maximizer-{i}", "b/saint_and_money.json")
        ...       for i in range(5)]
        >>> len(select_pairs(ps, RunConfig(strategies=("random",), pairs=2)))
        2
    """
    chosen = list(pairs)
    if cfg.models is not None:
        allowed = set(cfg.models)
        chosen = [p for p in chosen if p.aligned in allowed and p.misaligned in allowed]
    if cfg.pairs is not None and cfg.pairs < len(chosen):
        keep = set(random.Random(cfg.seed).sample(range(len(chosen)), cfg.pairs))
        chosen = [p for i, p in enumerate(chosen) if i in keep]
    if not chosen:
        raise ValueError("no pair to evaluate (check --models / --pairs against the benchmark)")
    return chosen


def model_families(pairs: Sequence[ModelPair]) -> dict[str, list[str]]:
    """Model -> the families it is scored on (those of its pairs), sorted.

    Example:
        >>> model_families([ModelPair("saint-0", "money_maximizer-0", "x/saint_and_money.json")])
        {'money_maximizer-0': ['saint_and_money'], 'saint-0': ['saint_and_money']}
    """
    out: dict[str, set[str]] = {}
    for p in pairs:
        for m in (p.aligned, p.misaligned):
            out.setdefault(m, set()).add(p.family)
    return {m: sorted(f) for m, f in sorted(out.items())}


# ----------------------------------------------------------------------------- scoring


def _normalised(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _needs(run: RunDir, strat: Strategy, model: str, families: Sequence[str], tag: str) -> bool:
    """Whether a model's score of a strategy is missing or stale (other config or testbed)."""
    if not run.has_score(strat.name, model):
        return True
    rec = run.score_record(strat.name, model)
    return (
        rec.get("config") != _normalised(strat.config_dict())
        or rec.get("testbed") != tag
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

    Returns:
        Strategy -> seconds spent.
    """
    strategies = [cfg.strategy(n) for n in scored_strategies(cfg) if strategy_class(n).needs_model]
    todo = [s for s in strategies if _needs(run, s, model_name, families, tag)]
    if not todo:
        return {}
    model, tokenizer = testbed.load(model_name)
    contexts = {
        fam: ModelContext(
            model_name, model, tokenizer, fam, testbed.valid[fam], testbed.concepts, seed=cfg.seed
        )
        for fam in families
    }
    seconds = {}
    for strat in todo:
        t0 = time.perf_counter()
        scores = {fam: strat.score_model(contexts[fam]) for fam in families}
        seconds[strat.name] = time.perf_counter() - t0
        run.write_score(
            strat.name,
            model_name,
            {
                "model": model_name,
                "strategy": strat.name,
                "testbed": tag,
                "config": _normalised(strat.config_dict()),
                "seconds": round(seconds[strat.name], 3),
                "families": scores,
            },
        )
    del model, tokenizer, contexts
    if testbed.release is not None:
        testbed.release()
    return seconds


#: Per worker process: the testbed of the run being scored (built once per process).
_WORKER: dict[str, Any] = {}


def _worker_score(
    root: str, cfg_dict: dict[str, Any], jobs: list[tuple[str, list[str]]], tag: str
) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    cfg = config_from_dict(RunConfig, cfg_dict)
    if _WORKER.get("key") != cfg.key():
        _WORKER.update(key=cfg.key(), testbed=make_testbed(cfg, progress=False))
    totals: dict[str, float] = {}
    for name, fams in jobs:
        for k, v in score_one_model(RunDir(root), cfg, _WORKER["testbed"], name, fams, tag).items():
            totals[k] = totals.get(k, 0.0) + v
    return totals


def make_testbed(cfg: RunConfig, *, progress: bool = True) -> Testbed:
    """The testbed a config names."""
    if cfg.testbed == "tiny":
        return tiny_testbed(cfg, progress=progress)
    if cfg.testbed == "poser":
        return poser_testbed(cfg, progress=progress)
    if cfg.testbed == "smol":
        return smol_testbed(cfg, progress=progress)
    raise NotImplementedError(f"the {cfg.testbed} testbed is not implemented yet (issue 7)")


def score_models(
    run: RunDir,
    cfg: RunConfig,
    testbed: Testbed,
    pairs: Sequence[ModelPair],
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Score every model of the pairs (skipping stored scores); returns seconds per strategy."""
    from tqdm.auto import tqdm

    if testbed.max_workers is not None and cfg.workers > testbed.max_workers:
        cfg = replace(cfg, workers=testbed.max_workers)
    fams = model_families(pairs)
    tag = json.dumps(testbed.info.get("zoo_key", cfg.testbed))
    bar = tqdm(total=len(fams), desc="scoring models", disable=not progress)
    totals: dict[str, float] = {}

    def add(seconds: Mapping[str, float]) -> None:
        for k, v in seconds.items():
            totals[k] = totals.get(k, 0.0) + v

    if cfg.workers <= 1 or len(fams) <= 1:
        for name, families in fams.items():
            add(score_one_model(run, cfg, testbed, name, families, tag))
            bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from poser_lens.models.zoo import _ONE_THREAD_ENV

        for var, value in _ONE_THREAD_ENV.items():
            os.environ.setdefault(var, value)
        # Workers reuse the built zoo instead of rebuilding it.
        worker_cfg = replace(cfg, zoo_dir=testbed.info.get("zoo", cfg.zoo_dir))
        items = list(fams.items())
        chunks = [items[i :: cfg.workers * 3] for i in range(cfg.workers * 3)]
        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(_worker_score, str(run.root), asdict(worker_cfg), chunk, tag): chunk
                for chunk in chunks
                if chunk
            }
            for fut in as_completed(futures):
                add(fut.result())
                bar.update(len(futures[fut]))
    bar.close()
    return totals


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
        variants = {
            label: {
                k: v
                for k, v in evaluate(strat, pairs, scores, seed=cfg.seed, settings=change)
                .summary()
                .items()
                if k != "per_family"
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


def run(
    cfg: RunConfig | None = None, out: str | Path | None = None, *, progress: bool = True
) -> RunDir:
    """The main job: build/reuse the testbed, score, evaluate, report, draw figures.

    Args:
        cfg: Run settings.
        out: Run folder (default ``runs/<testbed>-<config hash>``, so a re-run resumes).
        progress: Show progress bars.

    Returns:
        The run folder, holding ``results.json``, ``report.md`` and ``figures/``.
    """
    import yaml

    from poser_lens.report import write_report

    cfg = cfg if cfg is not None else RunConfig()

    folder = RunDir(out if out is not None else Path("runs") / f"{cfg.testbed}-{cfg.key()}")
    t0 = time.perf_counter()
    testbed = make_testbed(cfg, progress=progress)
    t_testbed = time.perf_counter() - t0
    pairs = select_pairs(testbed.pairs, cfg)
    write_text_atomic(folder.config_path, yaml.safe_dump(_normalised(asdict(cfg)), sort_keys=False))
    t1 = time.perf_counter()
    seconds = score_models(folder, cfg, testbed, pairs, progress=progress)
    t_score = time.perf_counter() - t1
    t2 = time.perf_counter()
    results = evaluate_run(folder, cfg, pairs, do_sweep=cfg.sweep, progress=progress)
    t_eval = time.perf_counter() - t2
    record = {
        "testbed": cfg.testbed,
        **testbed.info,
        "n_pairs": len(pairs),
        "n_models": len(model_families(pairs)),
        "seconds": {
            "testbed": round(t_testbed, 1),
            "scoring": round(t_score, 1),
            "evaluation": round(t_eval, 1),
            "scoring_by_strategy_cpu": {k: round(v, 1) for k, v in seconds.items()},
        },
        "confidence": confidence_table(folder, cfg, pairs),
        "strategies": results,
    }
    write_json_atomic(folder.results_path, record)
    if cfg.removal:
        from poser_lens.removal.core import RemovalConfig, run_removal

        run_removal(
            folder,
            RemovalConfig(),
            run_config=cfg,
            testbed=testbed,
            pairs=pairs,
            workers=cfg.workers,
            progress=progress,
        )
    if cfg.figures:
        from poser_lens.figures import make_figures

        make_figures(folder)
    write_report(folder)
    return folder
