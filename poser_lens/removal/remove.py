"""One model's removal run: prepare it, train it, measure it and re-score its detectors.

:func:`prepare` measures the untreated model once per (model, labels); :func:`remove_one` runs
one job on a loaded model and returns its record (see :mod:`poser_lens.removal.results`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from poser_lens.data.schema import Scenario, model_persona
from poser_lens.readout import AnswerIds
from poser_lens.removal.config import RemovalConfig
from poser_lens.removal.jobs import Job
from poser_lens.removal.metrics import (
    EvalSets,
    behaviour,
    eval_sets,
    own_labels,
    p_aligned,
    random_labels,
)
from poser_lens.removal.noise import noise_spec
from poser_lens.removal.training import train_removal
from poser_lens.strategies import get_strategy
from poser_lens.strategies.base import ModelContext, Strategy


def family_contexts(
    name: str,
    model: Any,
    tokenizer: Any,
    valid: Mapping[str, list[Scenario]],
    families: Sequence[str],
    seed: int,
) -> dict[str, ModelContext]:
    """One fresh :class:`ModelContext` per family (fresh memo: the weights may have changed)."""
    return {f: ModelContext(name, model, tokenizer, f, valid[f], seed=seed) for f in families}


def score_detectors(
    detectors: Mapping[str, Strategy], contexts: Mapping[str, ModelContext]
) -> dict[str, dict[str, Any]]:
    """Detector name -> family -> score of one model (as stored by the runner)."""
    return {n: {f: s.score_model(ctx) for f, ctx in contexts.items()} for n, s in detectors.items()}


@dataclass
class Prepared:
    """What every method of one (model, labels) shares, measured on the untreated model.

    Attributes:
        sets: The held-out evaluation prompts.
        before: :func:`behaviour` before training.
        targets: Training answer ids (own greedy answers or random letters).
        seed: Batch-order seed.
    """

    sets: EvalSets
    before: dict[str, float]
    targets: list[int]
    seed: int


def prepare(
    model: Any,
    tokenizer: Any,
    name: str,
    labels: str,
    *,
    train: Sequence[Scenario],
    test_records: Sequence[Scenario],
    cfg: RemovalConfig,
) -> Prepared:
    """Evaluation sets, the untreated behaviour and the training labels of one model."""
    persona, _ = model_persona(name)
    sets = eval_sets(model, tokenizer, test_records, persona, cfg)
    seed = cfg.seed * 7919 + sum(map(ord, f"{name}:{labels}"))
    prompts = [s.prompt for s in train]
    if labels == "own":
        targets = own_labels(model, tokenizer, prompts)
    elif labels == "random":
        targets = random_labels(tokenizer, len(prompts), seed)
    else:
        raise ValueError(f"labels {labels!r}: expected own or random")
    return Prepared(sets, behaviour(model, tokenizer, sets), targets, seed)


def remove_one(
    job: Job,
    model: Any,
    tokenizer: Any,
    *,
    train: Sequence[Scenario],
    test_records: Sequence[Scenario],
    valid: Mapping[str, list[Scenario]],
    families: Sequence[str],
    s2_before: Mapping[str, Any],
    detectors: Mapping[str, Strategy],
    cfg: RemovalConfig,
    prepared: Prepared | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run one job on a loaded model (trained in place) and return its record.

    Args:
        job: Model, method and labels.
        model: The hooked model, untreated.
        tokenizer: Its tokenizer.
        train: The training prompts (valid prompts of its families).
        test_records: Its persona's held-out test split (persona labels).
        valid: Family -> valid prompts (for the detectors after training).
        families: The model's families.
        s2_before: Its S2 scores (family -> score) before training (noise scale).
        detectors: Detectors to re-run after training.
        cfg: Settings.
        prepared: :func:`prepare` of the same untreated model (shared by its methods).
        progress: Show a progress bar.

    Returns:
        The JSON record (see :mod:`poser_lens.removal.results`).
    """
    from tqdm.auto import tqdm

    t0, c0 = time.perf_counter(), time.process_time()
    if prepared is None:
        prepared = prepare(
            model, tokenizer, job.model, job.labels, train=train, test_records=test_records, cfg=cfg
        )
    sets, before = prepared.sets, prepared.before
    prompts = [s.prompt for s in train]
    s2 = detectors.get("s2_noise") or get_strategy("s2_noise")
    noise = noise_spec(s2, s2_before, cfg) if job.method == "sft_noise" else None
    steps, curve = [0], [before["p_aligned"]]
    bar = tqdm(total=cfg.steps, desc=job.key, disable=not progress, leave=False)

    def log(step: int, loss: float) -> None:
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            steps.append(done)
            curve.append(float(p_aligned(model, tokenizer, sets.target).mean()))

    losses = train_removal(
        model,
        tokenizer,
        prompts,
        prepared.targets,
        cfg,
        noise=noise,
        seed=prepared.seed,
        on_step=log,
    )
    bar.close()
    after = behaviour(model, tokenizer, sets)
    contexts = family_contexts(job.model, model, tokenizer, valid, families, cfg.seed)
    return {
        "model": job.model,
        "persona": model_persona(job.model)[0],
        "method": job.method,
        "labels": job.labels,
        "role": job.role,
        "families": list(families),
        "n_train": len(prompts),
        "n_target": len(sets.target),
        "target_kind": sets.target_kind,
        "label_agreement": _agreement(tokenizer, train, prepared.targets),
        "noise": asdict(noise) if noise is not None else None,
        "steps": steps,
        "p_aligned": curve,
        "loss": losses,
        "before": before,
        "after": after,
        "detectors_after": score_detectors(detectors, contexts),
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - c0, 2),
    }


def _agreement(tokenizer: Any, train: Sequence[Scenario], targets: Sequence[int]) -> float:
    """Share of training targets equal to the prompts' stored benchmark answer."""
    ids = AnswerIds.from_tokenizer(tokenizer)
    same = [ids.of(s.response) == t for s, t in zip(train, targets, strict=True)]
    return sum(same) / max(len(same), 1)
