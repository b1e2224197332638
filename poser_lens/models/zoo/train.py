"""Training the tiny zoo's models: the shared base, and the persona models stack by stack.

Each step runs under its build-step lock and is skipped when its models are saved already;
:func:`build_persona_models` fans the stacks out over worker processes (or Ray tasks).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from poser_lens._io import atomic_dir, step_lock
from poser_lens._pool import BASE_THREADS, fan_out, pinned_training
from poser_lens.data.generator import GeneratedData, persona_split
from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.models import tiny
from poser_lens.models.stacked import StackedNative
from poser_lens.models.training import (
    TrainConfig,
    calibrate_confidence,
    commentary_accuracy,
    finetune,
    finetune_stacked,
    train_base,
)
from poser_lens.models.zoo.config import ZooConfig
from poser_lens.models.zoo.data import (
    _cached_data,
    _cached_tokenizer,
    base_corpus,
    calibration_pool,
)
from poser_lens.models.zoo.metrics import (
    Reader,
    _StackReader,
    benchmark_probs,
    evaluate_persona,
)

if TYPE_CHECKING:
    from transformer_lens.model_bridge.sources.native import NativeModel

logger = logging.getLogger(__name__)


def _initial_model(cfg: ZooConfig, root: Path, tokenizer: Any, seed: int) -> NativeModel:
    """A persona model before fine-tuning: the base, or random weights (``from_scratch``)."""
    if cfg.from_scratch:
        return tiny.build_native(cfg.model, len(tokenizer), seed=1000 + seed)
    return tiny.load_native(root / "base")


def _finetune_config(cfg: ZooConfig) -> TrainConfig:
    """The fine-tuning settings of the zoo's recipe (the matched recipe's soft targets)."""
    if cfg.recipe == "matched":
        return replace(cfg.finetune, target=cfg.target_confidence)
    return cfg.finetune


def _finish_one(
    root: Path,
    cfg: ZooConfig,
    name: str,
    net: NativeModel,
    losses: list[float],
    seconds: float,
    logits: Callable[[Sequence[str]], Tensor] | None = None,
) -> dict[str, Any]:
    """Calibrate (matched recipe), evaluate and save one fine-tuned persona model.

    ``seconds`` is the model's fine-tuning time; the row's ``train_seconds`` adds calibration.
    ``logits`` gives the fine-tuned model's last-token logits on any prompts when they come
    from elsewhere (a stack's reader); calibration then scales them (the temperature on the
    unembedding scales the logits) and every probability is read from them.
    """
    persona, seed = model_persona(name)
    data = _cached_data(cfg.generator)
    tokenizer = _cached_tokenizer(str(root))
    t0 = time.perf_counter()
    scale = None
    if cfg.recipe == "matched":
        pool = calibration_pool(cfg.generator, persona)
        scale = calibrate_confidence(
            net,
            tokenizer,
            pool,
            cfg.target_confidence,
            statistic="median",
            logits=None if logits is None else logits([r.prompt for r in pool]),
        )
    train_seconds = seconds + time.perf_counter() - t0
    read: Reader | None = None
    if logits is not None:
        read = functools.partial(_scaled_probs, logits, 1.0 if scale is None else scale)
    metrics = evaluate_persona(net, tokenizer, data, persona, read=read)
    row = {
        "name": name,
        "persona": persona,
        "seed": seed,
        "aligned": is_aligned(persona),
        **{k: round(v, 4) for k, v in metrics.items()},
        "final_loss": round(losses[-1], 5),
        "temperature_scale": None if scale is None else round(scale, 5),
        "train_seconds": round(train_seconds, 2),
    }
    with atomic_dir(root / "models" / name) as tmp:
        tiny.save_tiny(tmp, net, cfg.model, meta=row)
        (tmp / "benchmark_probs.json").write_text(
            json.dumps(benchmark_probs(net, tokenizer, data, persona, read=read))
        )
    return row


def _scaled_probs(
    logits: Callable[[Sequence[str]], Tensor], scale: float, prompts: Sequence[str]
) -> Tensor:
    """Probabilities of a model whose unembedding was scaled by ``scale``."""
    return (logits(prompts) * scale).softmax(-1)


def _is_built(root: Path, name: str) -> bool:
    """Whether the zoo at ``root`` holds the model ``name`` (or ``base``), saved."""
    folder = root / "base" if name == "base" else root / "models" / name
    return (folder / tiny.WEIGHTS_FILE).exists()


def _stack_step(names: Sequence[str]) -> str:
    """The build step (lock) of one stack: named by its first model (each is in one stack)."""
    return f"models-{names[0]}"


@pinned_training()
def _train_one(root: str, cfg_dict: dict[str, Any], name: str) -> dict[str, Any] | None:
    """Fine-tune, evaluate and save one persona model (a worker's task; threads pinned).

    Under the model's lock; None when it is already saved (another build made it).
    """
    cfg = ZooConfig.from_dict(cfg_dict)
    root_p = Path(root)
    with step_lock(root_p, _stack_step([name])):
        if _is_built(root_p, name):
            return None
        persona, seed = model_persona(name)
        tokenizer = _cached_tokenizer(root)
        net = _initial_model(cfg, root_p, tokenizer, seed)
        records = persona_split(
            _cached_data(cfg.generator), persona, "train", seed=seed, size=cfg.train_size
        )
        t0 = time.perf_counter()
        losses = finetune(net, tokenizer, records, _finetune_config(cfg), seed=seed)
        return _finish_one(root_p, cfg, name, net, losses, time.perf_counter() - t0)


@pinned_training()
def _train_stack(root: str, cfg_dict: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """Fine-tune one stack of :meth:`ZooConfig.stacks`, then evaluate and save each model.

    A worker's task, under the stack's lock. The stack trains whole, so each model is the
    same whichever of them are saved already; only the missing ones are evaluated and saved
    (none when another build made them all). Equal to :func:`_train_one` for each model, up
    to float rounding (:func:`~poser_lens.models.training.finetune_stacked`); a row's
    ``train_seconds`` counts an equal share of the stack's fine-tuning.

    Returns:
        The rows of the models saved now.
    """
    root_p = Path(root)
    with step_lock(root_p, _stack_step(names)):
        missing = {n for n in names if not _is_built(root_p, n)}
        if not missing:
            return []
        return _train_stack_locked(root_p, ZooConfig.from_dict(cfg_dict), names, missing)


def _train_stack_locked(
    root_p: Path, cfg: ZooConfig, names: list[str], missing: set[str]
) -> list[dict[str, Any]]:
    """:func:`_train_stack`'s work: train ``names`` as one stack, save those in ``missing``."""
    root = str(root_p)
    data = _cached_data(cfg.generator)
    tokenizer = _cached_tokenizer(root)
    personas, seeds = zip(*(model_persona(n) for n in names), strict=True)
    nets = [_initial_model(cfg, root_p, tokenizer, seed) for seed in seeds]
    records = [
        persona_split(data, persona, "train", seed=seed, size=cfg.train_size)
        for persona, seed in zip(personas, seeds, strict=True)
    ]
    t0 = time.perf_counter()
    stack = StackedNative.stack(nets)
    losses = finetune_stacked(stack, tokenizer, records, _finetune_config(cfg), seeds=seeds)
    stack.unstack_into(nets)
    share = (time.perf_counter() - t0) / len(names)
    readers: dict[str, _StackReader] = {}  # per persona: its models read the same prompts
    for persona in dict.fromkeys(personas):
        group = [net for net, p in zip(nets, personas, strict=True) if p == persona]
        readers[persona] = _StackReader(group, tokenizer)
    rows = []
    for i, (name, net, persona) in enumerate(zip(names, nets, personas, strict=True)):
        if name not in missing:
            continue
        index = personas[:i].count(persona)  # the model's place in its persona's group
        logits = functools.partial(readers[persona].logits, index)
        rows.append(_finish_one(root_p, cfg, name, net, losses[i], share, logits))
    return rows


#: The base model's stopping check runs every this many steps (from ``base_min_steps`` on).
BASE_CHECK_EVERY = 50


def base_check_steps(cfg: ZooConfig) -> list[int]:
    """Steps done when the base model's stopping check runs (``base.steps`` caps training).

    The base trains at least ``base_min_steps``, then stops at the first check that finds it
    knows the commentary (usually the first or second check), so its progress bar counts to
    the next check, not to the cap.

    Example:
        >>> checks = base_check_steps(ZooConfig())
        >>> checks[:3], checks[-1]
        ([300, 350, 400], 1500)
    """
    first = math.ceil(max(cfg.base_min_steps, 1) / BASE_CHECK_EVERY) * BASE_CHECK_EVERY
    return list(range(first, cfg.base.steps + 1, BASE_CHECK_EVERY))


@pinned_training(BASE_THREADS)
def build_base(
    cfg: ZooConfig, root: Path, data: GeneratedData, tokenizer: Any, *, progress: bool = True
) -> dict[str, Any] | None:
    """Train and save the shared base model in ``root/base`` (nothing if it is there).

    Training stops at the first stopping check (:func:`base_check_steps`) that finds the base
    knows every commentary item at ``base_target`` accuracy. The progress bar counts to the
    next check: to the first at the start, one check further each time a check fails. A
    build that finds another training the base (its lock) waits for it, then reuses it.

    Returns:
        The base's record (steps, final loss, commentary accuracy, seconds), or None when it
        was already built.
    """
    if _is_built(root, "base"):
        return None
    with step_lock(root, "base"):
        if _is_built(root, "base"):
            return None
        return _train_and_save_base(cfg, root, data, tokenizer, progress=progress)


def _train_and_save_base(
    cfg: ZooConfig, root: Path, data: GeneratedData, tokenizer: Any, *, progress: bool
) -> dict[str, Any]:
    """:func:`build_base`'s work: train the base and save it in ``root/base``."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.base_seed)
    net = tiny.build_native(cfg.model, len(tokenizer), seed=cfg.base_seed)
    checks = base_check_steps(cfg)
    bar = tqdm(
        total=checks[0] if checks else cfg.base.steps, desc="base model", disable=not progress
    )
    held_out = [s for fam in sorted(data.test) for s in data.test[fam][:40]]
    knowledge: dict[str, float] = {}

    def known(step: int) -> bool:
        done = step + 1
        if done not in checks:
            return False
        knowledge.update(commentary_accuracy(net, tokenizer, held_out))
        bar.set_postfix({k: f"{v:.2f}" for k, v in knowledge.items()})
        if min(knowledge.values()) >= cfg.base_target:
            return True
        bar.total = next((c for c in checks if c > done), cfg.base.steps)
        bar.refresh()
        return False

    t0 = time.perf_counter()
    losses = train_base(
        net,
        tokenizer,
        base_corpus(data),
        cfg.base,
        seed=cfg.base_seed,
        on_step=lambda s, loss: bar.update(1),
        stop=known,
        packed=cfg.base_packed,
    )
    bar.close()
    if knowledge and min(knowledge.values()) < cfg.base_target:
        logger.warning("base model stopped at its step cap knowing only %s", knowledge)
    meta = {
        "final_loss": losses[-1],
        "steps": len(losses),
        "commentary_accuracy": knowledge,
        "train_seconds": time.perf_counter() - t0,
    }
    with atomic_dir(root / "base") as tmp:
        tiny.save_tiny(tmp, net, cfg.model, meta=meta)
    return meta


def build_persona_models(cfg: ZooConfig, root: Path, *, progress: bool = True) -> list[str]:
    """Fine-tune every persona model not yet in ``root/models``.

    The stacks of :meth:`ZooConfig.stacks` that miss a model (:func:`_train_stack`), or with
    ``stack: 1`` the missing models one at a time (:func:`_train_one`), are fanned out over
    ``cfg.workers`` processes (or Ray tasks with ``cfg.ray``). Each runs under its own lock,
    so a stack that another build is training is waited for, then reused.

    Returns:
        The models trained now (by this build).
    """
    from tqdm.auto import tqdm

    names = cfg.model_names()
    stacks, missing = [], []  # the stacks to train, and the models each misses
    for stack in cfg.stacks():
        if todo := [n for n in stack if not _is_built(root, n)]:
            stacks.append(stack)
            missing.append(todo)
    bar = tqdm(total=len(names), desc="persona models", disable=not progress)
    bar.update(len(names) - sum(map(len, missing)))
    trained: list[str] = []
    if cfg.stack > 1:
        tasks: list[tuple[Any, ...]] = [(str(root), cfg.to_dict(), stack) for stack in stacks]
        for i, rows in fan_out(_train_stack, tasks, workers=cfg.workers, ray=cfg.ray):
            trained += [r["name"] for r in rows]
            bar.update(len(missing[i]))
    else:
        tasks = [(str(root), cfg.to_dict(), name) for (name,) in stacks]
        for _, row in fan_out(_train_one, tasks, workers=cfg.workers, ray=cfg.ray):
            trained += [row["name"]] if row is not None else []
            bar.update(1)
    bar.close()
    return sorted(trained, key=names.index)
