"""Low-rank adapters implemented as hooks: "how fast does this model learn X" without surgery.

:class:`LowRankAdapter` adds ``scale * (x @ A @ B)`` to an activation, where ``x`` is the
activation at a *source* hook point (by default the same point). Placed with source
``blocks.L.ln2.hook_normalized`` and target ``blocks.L.hook_mlp_out`` it is Poser's strategy-3
LoRA on the layer-L MLP (without Poser's quirk of also scaling the original MLP output). ``B``
starts at zero, so the adapter starts as the identity; only its parameters train.

For Hugging Face models, :func:`poser_lens.models.lora.peft_lora` takes the peft path instead
(LoRA modules inside the model, e.g. on each chosen layer's ``mlp.down_proj``).

Example:
    >>> ad = LowRankAdapter(d_in=8, d_out=8, rank=2, target="blocks.0.hook_resid_post")
    >>> [name for name, _ in ad.hooks()]
    ['blocks.0.hook_resid_post']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class LowRankAdapter(nn.Module):
    """A trainable rank-r update applied through TransformerLens hooks.

    Args:
        d_in: Width of the source activation.
        d_out: Width of the target activation.
        rank: Rank r.
        target: Hook point whose output gets the update.
        source: Hook point read as the adapter's input (default: ``target``).
        scale: Multiplier of the update (LoRA's alpha / r).
        seed: Initialisation seed of ``A`` (``B`` starts at zero).

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> from poser_lens.hooks import applied
        >>> tokens = torch.tensor([[1, 2, 3]])
        >>> adapter = LowRankAdapter(8, 8, rank=2, source="blocks.0.ln2.hook_normalized",
        ...                          target="blocks.0.hook_mlp_out")
        >>> clean = model(tokens)
        >>> with applied(model, adapter.hooks()):  # B starts at zero: the identity
        ...     torch.equal(model(tokens), clean)
        True
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        rank: int = 8,
        *,
        target: str,
        source: str | None = None,
        scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(d_in, rank, generator=gen) / rank**0.5)
        self.B = nn.Parameter(torch.zeros(rank, d_out))
        self.target, self.source, self.scale = target, source or target, scale
        self._x: Tensor | None = None

    def _capture(self, act: Tensor, hook: Any) -> None:
        self._x = act

    def _add(self, act: Tensor, hook: Any) -> Tensor:
        x = act if self.source == self.target else self._x
        if x is None:
            raise RuntimeError(f"adapter source {self.source} did not run before {self.target}")
        update = (x.to(self.A.dtype) @ self.A @ self.B) * self.scale
        return act + update.to(act.dtype)

    def hooks(self) -> list[tuple[str, Any]]:
        """The (name, fn) pairs to pass to :func:`poser_lens.hooks.applied`.

        Example:
            >>> ad = LowRankAdapter(4, 4, rank=1, target="blocks.1.hook_mlp_out",
            ...                     source="blocks.1.ln2.hook_normalized")
            >>> [name for name, _ in ad.hooks()]
            ['blocks.1.ln2.hook_normalized', 'blocks.1.hook_mlp_out']
        """
        if self.source == self.target:
            return [(self.target, self._add)]
        return [(self.source, self._capture), (self.target, self._add)]
