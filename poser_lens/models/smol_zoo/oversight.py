"""The auxiliary oversight head: the oversight level read at the answer position in training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from poser_lens.data.schema import Scenario
from poser_lens.models.smol_zoo.prefix import _decoder


class AuxOversight:
    """An auxiliary training loss: the oversight level read at the answer position.

    A linear head on the (RMS-normalised) output of decoder layer ``layer`` at each record's
    last token predicts whether oversight is poor, on records with a critical fact; its
    binary cross-entropy is added to the answer loss. The head exists only during training
    (the saved model is the adapter alone).

    Args:
        model: The (peft-wrapped) HF causal LM.
        layer: The decoder layer whose output the head reads.
        seed: Seed of the head's initialisation (the global RNG is left untouched), so a
            model does not depend on what the process trained before it.
    """

    def __init__(self, model: Any, layer: int, *, seed: int = 0) -> None:
        decoder = _decoder(model)
        param = next(model.parameters())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = torch.nn.Linear(int(decoder.config.hidden_size), 1)
        self.head = head.to(param.device)
        self._out: Tensor | None = None
        self._hook = decoder.layers[layer].register_forward_hook(self._keep)

    def _keep(self, _module: Any, _inputs: Any, out: Any) -> None:
        self._out = out[0] if isinstance(out, tuple) else out

    @staticmethod
    def targets(records: Sequence[Scenario]) -> tuple[Tensor, Tensor]:
        """``(mask, poor)``: which records have a critical fact, and their oversight."""
        mask = [bool(s.critical_facts) and s.oversight_is_poor is not None for s in records]
        poor = [float(bool(s.oversight_is_poor)) for s in records]
        return torch.tensor(mask), torch.tensor(poor)

    def loss(self, last: Tensor, records: Sequence[Scenario]) -> tuple[Tensor, float] | None:
        """The head's loss on the last forward's batch and its accuracy (None: no target)."""
        if self._out is None:
            return None
        h = self._out[torch.arange(len(records), device=last.device), last]
        return oversight_loss(self.head, h[:, None], records)

    def remove(self) -> None:
        """Take the hook off."""
        self._hook.remove()


def rms_normalised(h: Tensor) -> Tensor:
    """``h`` in float32, divided by its root mean square over the last axis.

    An oversight head's input, in training and when a probe fits the head.

    Example:
        >>> rms_normalised(torch.tensor([[3.0, 4.0]])).pow(2).mean().round(decimals=4).item()
        1.0
    """
    h = h.float()
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


def oversight_loss(
    head: torch.nn.Module, h: Tensor, records: Sequence[Scenario]
) -> tuple[Tensor, float] | None:
    """An oversight head's BCE on RMS-normalised states and its accuracy at the answer position.

    Args:
        head: A linear map to one logit ("is oversight poor?").
        h: ``[record, position, d_model]`` states at each record's last positions, the answer
            position last (one position: the answer position alone).
        records: The records; those without a critical fact have no target.

    Returns:
        The loss over every target position and the accuracy at the answer position, or
        None when no record has a target.
    """
    mask, poor = AuxOversight.targets(records)
    if not bool(mask.any()):
        return None
    logit = head(rms_normalised(h)).squeeze(-1)  # [record, position]
    m, y = mask.to(logit.device), poor.to(logit.device)
    target = y[:, None].expand_as(logit)
    acc = float(((logit[m, -1] > 0).float() == y[m]).float().mean())
    return F.binary_cross_entropy_with_logits(logit[m], target[m]), acc
