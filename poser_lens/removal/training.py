"""The training loop (:func:`train_removal`): AdamW on the answer token, optionally under noise."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from poser_lens._pool import pinned_training
from poser_lens.readout import encode, last_logits
from poser_lens.removal.config import RemovalConfig
from poser_lens.removal.noise import NoiseSpec
from poser_lens.strategies.common import model_device


def _optimizer(model: Any, cfg: RemovalConfig) -> tuple[Any, Any, list[Tensor]]:
    """AdamW with the unembedding at ``head_lr_scale`` x the body's learning rate."""
    params = list(dict.fromkeys(model.parameters()))
    unembed = getattr(model, "unembed", None)
    head_ids = {id(p) for p in unembed.parameters()} if unembed is not None else set()
    head = [p for p in params if id(p) in head_ids]
    body = [p for p in params if id(p) not in head_ids]
    groups = [{"params": body, "lr": cfg.lr}]
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.head_lr_scale})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1)))
    return opt, sched, params


@pinned_training()
def train_removal(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[int],
    cfg: RemovalConfig,
    *,
    noise: NoiseSpec | None = None,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fine-tune a hooked model on answer tokens, optionally under S2 noise.

    Each step draws ``cfg.batch_size`` prompts (a seeded shuffle, epoch after epoch), runs the
    hooked model inside ``with applied(model, noise.hooks(...))`` (no hooks for plain
    SFT) and takes one AdamW step on the cross-entropy of the answer token at each row's last
    position. The hooks are on only for that step's forward and come off afterwards, also when
    the step raises.

    Args:
        model: A hooked model (``TransformerBridge``); trained in place.
        tokenizer: Its tokenizer.
        prompts: Training prompts.
        targets: The answer token id of each prompt.
        cfg: Optimiser settings (``steps``, ``lr``, ``head_lr_scale``, ``batch_size``, ...).
        noise: S2 noise to inject (``sft_noise``); None for plain SFT.
        seed: Batch order seed.
        on_step: Called with ``(step, loss)`` after each step, hooks off (evaluation, progress).

    Returns:
        The loss of every step.

    Example:
        ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

        >>> a = tok.convert_tokens_to_ids("A")
        >>> losses = train_removal(lm, tok, ["<<prompt>> x <</prompt>>"], [a],
        ...                        RemovalConfig(steps=3, batch_size=2, lr=1e-2),
        ...                        noise=NoiseSpec(layer=0, norm=1.0, coeff=1.0))
        >>> len(losses), losses[-1] < losses[0]
        (3, True)
    """
    if len(prompts) != len(targets) or not prompts:
        raise ValueError(f"{len(prompts)} prompts for {len(targets)} targets (need >= 1)")
    device = model_device(model)
    d_model = int(model.cfg.d_model)
    opt, sched, params = _optimizer(model, cfg)
    rng = random.Random(f"removal-batches:{seed}")
    order: list[int] = []
    losses: list[float] = []
    for step in range(cfg.steps):
        while len(order) < cfg.batch_size:
            fresh = list(range(len(prompts)))
            rng.shuffle(fresh)
            order.extend(fresh)
        rows, order = order[: cfg.batch_size], order[cfg.batch_size :]
        ids, last = encode(tokenizer, [prompts[i] for i in rows])
        ids, last = ids.to(device), last.to(device)
        target = torch.tensor([targets[i] for i in rows], device=device)
        hooks = noise.hooks(d_model, step, last) if noise is not None else []
        with torch.enable_grad():
            logits = last_logits(model, ids, last, hooks=hooks)
            loss = F.cross_entropy(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    for p in params:
        p.grad = None
    return losses
