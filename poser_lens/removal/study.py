"""A study's shared state and stored files: :class:`Study`, untreated scores, job records.

Everything under ``<run>/removal/`` that the jobs read and write: ``detectors_before/`` (each
model's untreated detector scores) and ``records/`` (one record per job, reused when its
settings match). :func:`run_jobs` runs the jobs of one (model, labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from poser_lens._io import read_json, write_json_atomic
from poser_lens.config import config_from_dict, normalised
from poser_lens.data.poser import ModelPair, load_training
from poser_lens.data.schema import Scenario, model_persona
from poser_lens.removal.config import RemovalConfig
from poser_lens.removal.jobs import Job
from poser_lens.removal.remove import family_contexts, prepare, remove_one, score_detectors
from poser_lens.runs import RunDir
from poser_lens.strategies import get_strategy, strategy_class
from poser_lens.strategies.base import Strategy
from poser_lens.testbeds import model_families


def removal_dir(run: RunDir) -> Path:
    """``<run>/removal``."""
    return run.root / "removal"


@dataclass
class Study:
    """What the workers of one study share (built once per process).

    Attributes:
        testbed: The run's testbed (valid prompts, pairs, loader).
        test: Persona -> its held-out test split.
        families: Model -> its families.
        detectors: Detector name -> configured strategy.
    """

    testbed: Any
    test: dict[str, list[Scenario]]
    families: dict[str, list[str]]
    detectors: dict[str, Strategy] = field(default_factory=dict)


def _detectors(cfg: RemovalConfig, configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Strategy]:
    """The configured detectors (the run's strategy settings; S2 at its headline only)."""
    out = {}
    for n in dict.fromkeys(("s2_noise", *cfg.detectors)):
        conf: Any = config_from_dict(strategy_class(n).config_cls, configs.get(n, {}))
        if n == "s2_noise" and not cfg.detector_grid:
            conf = replace(conf, layer_fracs=(conf.layer_frac,), kinds=(conf.headline_kind,))
        out[n] = get_strategy(n, conf)
    return out


def make_study(
    testbed: Any,
    pairs: Sequence[ModelPair],
    cfg: RemovalConfig,
    strategy_configs: Mapping[str, Mapping[str, Any]],
) -> Study:
    """The shared state of a study on a testbed with a Poser-layout folder (tiny zoo)."""
    info = testbed.info
    root = info.get("poser_root") or (Path(info["zoo"]) / "poser" if "zoo" in info else None)
    root = root or info.get("data")
    if root is None:
        raise ValueError("removal needs a testbed with a Poser-layout folder (test splits)")
    training = load_training(root)
    test = {p: splits["test"] for p, splits in training.items() if "test" in splits}
    return Study(testbed, test, model_families(pairs), _detectors(cfg, strategy_configs))


def _before_path(run: RunDir, model: str) -> Path:
    return removal_dir(run) / "detectors_before" / f"{model}.json"


def _record_path(run: RunDir, job: Job) -> Path:
    return removal_dir(run) / "records" / f"{job.key}.json"


def detectors_before(run: RunDir, study: Study, model: str, cfg: RemovalConfig) -> dict[str, Any]:
    """A model's untreated detector scores: stored, reused from the run's scores, or computed."""
    path = _before_path(run, model)
    conf = {n: normalised(s.config_dict()) for n, s in study.detectors.items()}
    fams = study.families[model]
    if path.exists():
        rec = read_json(path)
        if rec.get("config") == conf and all(f in rec["scores"].get("s2_noise", {}) for f in fams):
            return rec["scores"]
    scores: dict[str, Any] = {}
    todo = {}
    for name, strat in study.detectors.items():
        stored = run.score_path(name, model)
        if stored.exists():
            rec = read_json(stored)
            if rec.get("config") == conf[name] and all(f in rec["families"] for f in fams):
                scores[name] = {f: rec["families"][f] for f in fams}
                continue
        todo[name] = strat
    if todo:
        m, tok = study.testbed.load(model)
        ctxs = family_contexts(model, m, tok, study.testbed.valid, fams, cfg.seed)
        scores.update(score_detectors(todo, ctxs))
    write_json_atomic(path, {"model": model, "config": conf, "scores": scores}, indent=None)
    return scores


def job_config(cfg: RemovalConfig, detectors: Mapping[str, Strategy]) -> dict[str, Any]:
    """The settings that change one job's result (a stored record is reused when they match).

    Which models are treated (``methods``, ``fakers``, ``controls``, ``control_seeds``) is
    left out; the detectors' configs are in.
    """
    d = normalised(asdict(cfg))
    for k in ("methods", "fakers", "controls", "control_seeds"):
        d.pop(k)
    d["detector_configs"] = {n: normalised(s.config_dict()) for n, s in detectors.items()}
    return d


def run_jobs(
    run: RunDir,
    study: Study,
    jobs: Sequence[Job],
    cfg: RemovalConfig,
    *,
    progress: bool = False,
    timings: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Run the jobs of one (model, labels), skipping those stored with the same settings.

    The untreated model's evaluation sets, behaviour and labels are measured once and shared
    by its methods; each method starts from freshly loaded weights. A job's wall and CPU
    seconds go to ``timings`` (job key -> ``{"seconds", "cpu_seconds"}``), not into its
    stored record, so records of the same settings are the same bytes run to run.
    """
    if len({(j.model, j.labels) for j in jobs}) > 1:
        raise ValueError("run_jobs takes the jobs of one model and one kind of labels")
    conf = job_config(cfg, study.detectors)
    out, todo = [], []
    for job in jobs:
        path = _record_path(run, job)
        rec = read_json(path) if path.exists() else None
        if rec is not None and rec.get("config") == conf:
            out.append(rec)
        else:
            todo.append(job)
    if not todo:
        return out
    name, labels = todo[0].model, todo[0].labels
    before = detectors_before(run, study, name, cfg)
    fams = study.families[name]
    first_of: dict[str, Scenario] = {}  # each prompt once, at its first place
    for f in fams:
        for s in study.testbed.valid[f]:
            first_of.setdefault(s.prompt, s)
    train = list(first_of.values())
    test_records = study.test[model_persona(name)[0]]
    prepared = None
    for job in todo:
        model, tok = study.testbed.load(name)
        if prepared is None:
            prepared = prepare(
                model, tok, name, labels, train=train, test_records=test_records, cfg=cfg
            )
        rec = remove_one(
            job,
            model,
            tok,
            train=train,
            test_records=test_records,
            valid=study.testbed.valid,
            families=fams,
            s2_before=before["s2_noise"],
            detectors=study.detectors,
            cfg=cfg,
            prepared=prepared,
            progress=progress,
        )
        rec["config"] = conf
        spent = {k: rec.pop(k) for k in ("seconds", "cpu_seconds")}
        if timings is not None:
            timings[job.key] = spent
        write_json_atomic(_record_path(run, job), rec, indent=None)
        out.append(rec)
    return out
