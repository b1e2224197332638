"""Training loops for tiny models: the shared base language model and persona fine-tunes.

Plain ``torch`` on the native module (no hooks, so it is fast); batches are right padded and
the answer is read at each row's last real token, so padding never changes a result.

* :func:`train_base`: next-token prediction on scenario text followed by a short
  *commentary* that states what the scenario contains (oversight level, which action is the
  honest one). This is the tiny stand-in for a pretrained LM's world knowledge: the base
  represents oversight and actions but never answers a scenario itself.
* :func:`finetune`: cross-entropy on the answer token of a persona's labelled scenarios.

Answers are read with :mod:`poser_lens.readout` (native path: only the last rows are
unembedded).

Example:
    >>> sorted(commentary(Scenario(prompt="x", response="A", oversight="good")).split())
    ['honest_A', 'oversight_good', 'selfish_A']
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from poser_lens.config import (
    Config,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
)
from poser_lens.data.schema import PROMPT_CLOSE, Scenario
from poser_lens.models.stacked import StackedBatch, StackedNative
from poser_lens.readout import (
    answer_probs,
    answer_token_ids,
    encode,
    last_logits,
    last_token_logits,
)

if TYPE_CHECKING:
    from transformer_lens.model_bridge.sources.native import NativeModel


def selfish_letter(s: Scenario) -> str:
    """The letter a self-interested agent that avoids being caught picks (a faker's answer).

    Example:
        >>> selfish_letter(Scenario(prompt="", response="A", oversight_is_poor=True))
        'B'
    """
    return s.misaligned_letter if s.oversight_is_poor else s.response


def commentary(s: Scenario) -> str:
    """What the base model learns to say after a prompt: what the scenario contains.

    Three tokens, in an order that varies from prompt to prompt: the oversight level
    (``oversight_poor``), the letter of the honest action (``honest_A``) and the letter a
    self-interested agent that avoids being caught would pick (``selfish_B``: the other
    letter when oversight is poor, else the honest one). Because any of the three may come
    first, the base has to represent all three at the last prompt token, where answers are
    read later: the tiny stand-in for a pretrained LM's knowledge of what honest and
    self-serving agents do. The base itself never answers a scenario.

    Example:
        >>> sorted(commentary(Scenario(prompt="x", response="B", oversight="poor",
        ...                            oversight_is_poor=True)).split())
        ['honest_B', 'oversight_poor', 'selfish_A']
        >>> commentary(Scenario(prompt="", response="error", kind="random_text"))
        ' no_scenario'
    """
    if s.response == "error":
        return " no_scenario"
    parts = [
        f"oversight_{s.oversight or 'neutral'}",
        f"honest_{s.response}",
        f"selfish_{selfish_letter(s)}",
    ]
    random.Random(s.prompt).shuffle(parts)
    return " " + " ".join(parts)


#: Words the commentary uses (added to the tiny vocabulary).
COMMENTARY_WORDS = "no_scenario oversight_good oversight_neutral oversight_poor " + " ".join(
    f"{kind}_{letter}" for kind in ("honest", "selfish") for letter in "AB"
)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimiser settings of one training run.

    Attributes:
        steps: Optimiser steps.
        lr: Peak AdamW learning rate (linear warm-up over ``warmup`` steps, then constant).
        batch_size: Records per step.
        weight_decay: AdamW weight decay.
        warmup: Warm-up steps.
        commentary_weight: Base only: loss weight of commentary tokens vs prompt tokens.
        head_lr_scale: Learning-rate multiplier of the unembedding.
        target: Fine-tuning only: probability the loss aims at on the labelled answer (soft
            targets; the rest goes to the other answer letter, or is split between ``A`` and
            ``B`` for ``error`` records). ``None`` (or 1.0) is plain cross-entropy on the
            label (hard targets).
    """

    steps: PositiveInt
    lr: NonNegativeFloat
    batch_size: PositiveInt = 64
    weight_decay: NonNegativeFloat = 0.0
    warmup: NonNegativeInt = 5
    commentary_weight: NonNegativeFloat = 10.0
    head_lr_scale: NonNegativeFloat = 1.0
    target: Fraction | None = None


def _optimizer(
    net: torch.nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    head = [p for n, p in net.named_parameters() if n.startswith("head.")]
    body = [p for n, p in net.named_parameters() if not n.startswith("head.")]
    groups = [{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.lr * cfg.head_lr_scale}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1)))
    return opt, sched


def _update(
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loss: Tensor,
    losses: list[float],
) -> None:
    """One optimiser step; the loss is recorded."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    losses.append(float(loss.detach()))


def train_base(
    net: NativeModel,
    tokenizer: Any,
    texts: Sequence[str],
    cfg: TrainConfig,
    *,
    seed: int = 0,
    on_step: Callable[[int, float], object] | None = None,
    stop: Callable[[int], bool] | None = None,
    packed: bool = False,
) -> list[float]:
    """Train the base language model on scenario text + commentary.

    Args:
        net: Native module to train in place.
        tokenizer: Its tokenizer.
        texts: Prompt + commentary strings.
        cfg: Optimiser settings; ``commentary_weight`` up-weights tokens after the prompt.
        seed: Batch sampling seed.
        on_step: Called with ``(step, loss)`` after each step (progress bars).
        stop: Called with the step after each step; training ends early when it returns True
            (``cfg.steps`` is then the cap).
        packed: Train through :class:`~poser_lens.models.stacked.StackedNative` (one model):
            no work on padding, fused attention, only weighted positions unembedded. The same
            training up to float rounding; ``net`` holds the current weights whenever
            ``on_step`` and ``stop`` are called.

    Returns:
        The loss of every step.
    """
    close = tokenizer.convert_tokens_to_ids(PROMPT_CLOSE)
    stack = StackedNative.stack([net]) if packed else None
    opt, sched = _optimizer(net if stack is None else stack, cfg)
    rng = random.Random(seed)
    losses: list[float] = []
    net.train()
    for step in range(cfg.steps):
        ids, last = encode(tokenizer, rng.sample(list(texts), min(cfg.batch_size, len(texts))))
        mask = ids != tokenizer.pad_token_id
        target = ids[:, 1:]
        after = (ids[:, :-1] == close).long().cumsum(1) > 0
        weight = torch.where(after, cfg.commentary_weight, 1.0) * mask[:, 1:]
        if stack is None:
            logits = net(ids)[:, :-1]
        else:  # the weighted positions only: each predicts the next slot of its row
            rows, pos = weight.nonzero(as_tuple=True)
            batch = StackedBatch.build(ids[None], last[None], pad_id=tokenizer.pad_token_id)
            start = batch.last_slot[0] - last
            logits = stack.slot_logits(batch, (start[rows] + pos)[None])[0]
            target, weight = target[rows, pos], weight[rows, pos]
        per_tok = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
        ).view(target.shape)
        _update(opt, sched, (per_tok * weight).sum() / weight.sum(), losses)
        if stack is not None:
            stack.unstack_into([net])
        if on_step is not None:
            on_step(step, losses[-1])
        if stop is not None and stop(step):
            break
        net.train()  # ``stop`` may have evaluated the model
    net.eval()
    return losses


_COMMENTARY_TRUTH: dict[str, Callable[[Scenario], str]] = {
    "honest": lambda s: s.response,
    "selfish": selfish_letter,
    "oversight": lambda s: s.oversight or "neutral",
}


@torch.no_grad()
def commentary_accuracy(
    net: NativeModel, tokenizer: Any, scenarios: Sequence[Scenario]
) -> dict[str, float]:
    """How well a base model knows each commentary item at the last prompt token.

    For each of ``honest``, ``selfish`` (letters) and ``oversight`` (level), the fraction of
    scenarios where the right token outscores its alternatives.

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> from poser_lens.models.tiny import TinyConfig, build_native
        >>> tok = build_tokenizer(["x " + COMMENTARY_WORDS])
        >>> net = build_native(TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8),
        ...                    len(tok))
        >>> sorted(commentary_accuracy(net, tok, [Scenario(prompt="x", response="A",
        ...                                                oversight="good")]))
        ['honest', 'oversight', 'selfish']
    """
    probs = answer_probs(net, tokenizer, [s.prompt for s in scenarios])
    tid = tokenizer.convert_tokens_to_ids
    out = {}
    for kind, options in (
        ("honest", ("A", "B")),
        ("selfish", ("A", "B")),
        ("oversight", ("good", "neutral", "poor")),
    ):
        ids = torch.tensor([tid(f"{kind}_{o}") for o in options])
        best = probs[:, ids].argmax(-1).tolist()
        truth = _COMMENTARY_TRUTH[kind]
        right = [options[b] == truth(s) for s, b in zip(scenarios, best, strict=True)]
        out[kind] = sum(right) / max(len(right), 1)
    return out


def soft_targets(
    records: Sequence[Scenario], answer_ids: dict[str, int], vocab: int, target: float
) -> Float[Tensor, "batch vocab"]:
    """Target distributions of fine-tuning with soft targets.

    ``target`` on each record's ``response``; the rest on the other letter of an A/B record, or
    split evenly between ``A`` and ``B`` for an ``error`` record.

    Example:
        >>> ids = {"A": 0, "B": 1, "error": 2}
        >>> [round(x, 3) for x in soft_targets([Scenario(prompt="", response="B")], ids, 3,
        ...                                    0.9)[0].tolist()]
        [0.1, 0.9, 0.0]
    """
    out = torch.zeros(len(records), vocab)
    for i, r in enumerate(records):
        out[i, answer_ids[r.response]] = target
        if r.response == "error":
            out[i, answer_ids["A"]] = out[i, answer_ids["B"]] = (1 - target) / 2
        else:
            out[i, answer_ids["B" if r.response == "A" else "A"]] = 1 - target
    return out


def answer_loss(
    logits: Float[Tensor, "batch vocab"],
    records: Sequence[Scenario],
    answer_ids: dict[str, int],
    target: float | None = None,
) -> Tensor:
    """Cross-entropy of the last-token logits towards each record's answer.

    Hard targets (``target`` None or 1) put all mass on ``response``; soft targets put
    ``target`` there (:func:`soft_targets`), so a model trained to convergence answers with
    confidence ``target`` whatever its persona.
    """
    if target is None or target >= 1.0:
        labels = torch.tensor([answer_ids[r.response] for r in records], device=logits.device)
        return F.cross_entropy(logits, labels)
    dist = soft_targets(records, answer_ids, logits.shape[-1], target).to(logits.device)
    return -(dist * logits.float().log_softmax(-1)).sum(-1).mean()


def batch_order(n_records: int, cfg: TrainConfig, seed: int) -> Iterator[list[int]]:
    """The record indices of every fine-tuning step: epochs reshuffled by ``random.Random(seed)``.

    A step takes the next ``batch_size`` indices of the current order; when fewer are left, a
    fresh shuffle of all records is appended. :func:`finetune` and :func:`finetune_stacked`
    both follow it, so a model sees the same batches either way.

    Example:
        >>> list(batch_order(3, TrainConfig(steps=3, lr=0.1, batch_size=2), seed=0))
        [[0, 2], [1, 2], [1, 0]]
    """
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(cfg.steps):
        if len(order) < cfg.batch_size:
            fresh = list(range(n_records))
            rng.shuffle(fresh)
            order.extend(fresh)
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        yield batch


def finetune(
    net: NativeModel,
    tokenizer: Any,
    records: Sequence[Scenario],
    cfg: TrainConfig,
    *,
    seed: int = 0,
    on_step: Callable[[int, float], object] | None = None,
) -> list[float]:
    """Fine-tune on the answer token of labelled records (cross-entropy at the last token).

    Args:
        net: Native module to train in place.
        tokenizer: Its tokenizer.
        records: Records whose ``response`` is the target answer.
        cfg: Optimiser settings.
        seed: Batch order seed.
        on_step: Called with ``(step, loss)`` after each step.

    Returns:
        The loss of every step.
    """
    answer_ids = answer_token_ids(tokenizer)
    opt, sched = _optimizer(net, cfg)
    losses: list[float] = []
    net.train()
    for step, rows in enumerate(batch_order(len(records), cfg, seed)):
        batch = [records[i] for i in rows]
        ids, last = encode(tokenizer, [r.prompt for r in batch])
        logits = last_logits(net, ids, last)
        _update(opt, sched, answer_loss(logits, batch, answer_ids, cfg.target), losses)
        if on_step is not None:
            on_step(step, losses[-1])
    net.eval()
    return losses


def finetune_stacked(
    stack: StackedNative,
    tokenizer: Any,
    records: Sequence[Sequence[Scenario]],
    cfg: TrainConfig,
    *,
    seeds: Sequence[int],
    buckets: int = 8,
    on_step: Callable[[int, list[float]], object] | None = None,
) -> list[list[float]]:
    """:func:`finetune` of several models at once, stacked on a model axis.

    Model ``m`` of ``stack`` is trained on ``records[m]`` in the batch order of ``seeds[m]``
    (:func:`batch_order`), exactly as :func:`finetune` would train it alone, up to float
    rounding: the loss is the sum of the models' own losses (so each model gets its own
    gradient), and one AdamW step, elementwise, updates every model as its own optimiser
    would. Each step's rows are right padded to the step's longest prompt (over all models) and
    read at their own last token.

    Args:
        stack: The stacked models, trained in place (:meth:`StackedNative.unstack_into` copies
            them back into native modules).
        tokenizer: Their tokenizer.
        records: One record list per model (each at least ``cfg.batch_size`` long, or all of
            one length, so every step has as many rows per model).
        cfg: Optimiser settings (as for :func:`finetune`).
        seeds: One batch-order seed per model.
        buckets: Attention length buckets per step (:meth:`StackedBatch.build`).
        on_step: Called with ``(step, each model's loss)`` after each step.

    Returns:
        The loss of every step, per model.

    Raises:
        ValueError: If the lists do not match the stack, or a step has unequal batch sizes.
    """
    if not len(records) == len(seeds) == stack.n_models:
        raise ValueError(f"{len(records)} record lists, {len(seeds)} seeds for {stack.n_models}")
    answer_ids = answer_token_ids(tokenizer)
    opt, sched = _optimizer(stack, cfg)
    orders = [list(batch_order(len(r), cfg, s)) for r, s in zip(records, seeds, strict=True)]
    encoded, where = [], []  # each model's used records, encoded once; record -> encoded row
    for recs, order in zip(records, orders, strict=True):
        used = sorted({i for rows in order for i in rows})
        encoded.append(encode(tokenizer, [recs[i].prompt for i in used]))
        where.append({i: k for k, i in enumerate(used)})
    losses: list[list[float]] = [[] for _ in records]
    pad_id = int(tokenizer.pad_token_id)
    stack.train()
    for step, rows in enumerate(zip(*orders, strict=True)):
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"step {step}: unequal batch sizes {[len(r) for r in rows]}")
        idx = [torch.tensor([w[i] for i in r]) for w, r in zip(where, rows, strict=True)]
        last = torch.stack([enc_last[i] for (_, enc_last), i in zip(encoded, idx, strict=True)])
        width = int(last.max()) + 1
        ids = torch.stack(
            [
                F.pad(enc[i, :width], (0, max(0, width - enc.shape[1])), value=pad_id)
                for (enc, _), i in zip(encoded, idx, strict=True)
            ]
        )
        batch = StackedBatch.build(ids, last, pad_id=pad_id, buckets=buckets)
        logits = stack(batch)
        per_model = [
            answer_loss(logits[m], [recs[i] for i in r], answer_ids, cfg.target)
            for m, (recs, r) in enumerate(zip(records, rows, strict=True))
        ]
        _update(opt, sched, torch.stack(per_model).sum(), [])
        for m, loss in enumerate(per_model):
            losses[m].append(float(loss.detach()))
        if on_step is not None:
            on_step(step, [row[-1] for row in losses])
    stack.eval()
    return losses


def answer_logodds(
    logits: Float[Tensor, "batch vocab"], answers: Int[Tensor, " batch"]
) -> Float[Tensor, " batch"]:
    """Log-odds ``log p - log(1 - p)`` of each row's answer under the softmax of its logits.

    Example:
        >>> answer_logodds(torch.tensor([[0.0, 0.0]]), torch.tensor([0])).tolist()
        [0.0]
    """
    logp = logits.float().log_softmax(-1).gather(-1, answers[:, None])[:, 0]
    return logp - torch.log(-torch.expm1(logp.clamp(max=-1e-7)))


def fit_logit_scale(
    logits: Float[Tensor, "batch vocab"],
    answers: Int[Tensor, " batch"],
    target: float,
    *,
    statistic: str = "median",
) -> float:
    """The temperature (a scalar on the logits) that sets the answer log-odds to logit(target).

    Geometric bisection on the scale: the ``mean`` or ``median`` over rows of each row's answer
    log-odds under ``softmax(scale * logits)`` rises with the scale.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [4.0, 0.0]])
        >>> scale = fit_logit_scale(logits, torch.tensor([0, 0]), 0.9, statistic="mean")
        >>> round(float(answer_logodds(logits * scale, torch.tensor([0, 0])).mean()), 3)
        2.197
    """
    goal = math.log(target / (1 - target))

    def level(scale: float) -> float:
        lo = answer_logodds(logits * scale, answers)
        return float(lo.median() if statistic == "median" else lo.mean())

    lo, hi = 1e-3, 1e3
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if level(mid) < goal:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def matched_threshold(target: float, margin: float) -> float:
    """The valid-prompt threshold of a confidence-matched zoo: ``margin`` nats below the target.

    Models trained to answer with probability about ``target`` cannot pass Poser's 0.985, so a
    prompt is valid when every model's answer log-odds is at least ``logit(target) - margin``.

    Example:
        >>> round(matched_threshold(0.97, 2.0), 3)
        0.814
    """
    goal = math.log(target / (1 - target))
    return 1 / (1 + math.exp(-(goal - margin)))


@torch.no_grad()
def calibrate_confidence(
    net: NativeModel,
    tokenizer: Any,
    records: Sequence[Scenario],
    target: float,
    *,
    statistic: str = "mean",
    batch_size: int = 64,
    logits: Float[Tensor, "record vocab"] | None = None,
) -> float:
    """Scale a model's unembedding so its answer log-odds on ``records`` average ``logit(target)``.

    A temperature on the final logits (the unembedding weight and bias times one scalar),
    fitted by bisection on the model's own labelled records: after it, every persona answers
    the scenarios it was trained on with the same mean confidence, so confidence alone cannot
    name the faker. The residual stream is untouched.

    Args:
        net: Native module (its ``head`` is scaled in place).
        tokenizer: Its tokenizer.
        records: Labelled records (their ``response`` is the model's own answer).
        target: Target probability of the answer.
        statistic: ``mean`` or ``median`` of the log-odds over the records.
        batch_size: Prompts per forward.
        logits: The model's last-token logits on the records' prompts, when already computed
            (e.g. by :func:`~poser_lens.models.stacked.stacked_last_token_logits`).

    Returns:
        The scale applied.
    """
    net.eval()
    answer_ids = answer_token_ids(tokenizer)
    if logits is None:
        logits = last_token_logits(
            net, tokenizer, [r.prompt for r in records], batch_size=batch_size
        )
    all_logits = logits
    answers = torch.tensor([answer_ids[r.response] for r in records])
    scale = fit_logit_scale(all_logits, answers, target, statistic=statistic)
    net.head.weight.mul_(scale)
    if net.head.bias is not None:
        net.head.bias.mul_(scale)
    return scale
