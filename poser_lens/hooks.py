"""Hook functions ``fn(act, hook)`` and the names and positions they act on.

Every intervention in poser_lens is a TransformerLens hook function, parameterised by a small
dataclass, and applied only inside ``with model.hooks(fwd_hooks=[(name, fn), ...]):`` (or
:func:`applied`), so interventions nest, compose and always come off, even after an exception.

Layers are given as :data:`LayerSpec`: an ``int`` is a block index, a ``float`` in ``[0, 1]`` a
fraction of depth, so Poser's "layer 15 of 40" is ``15 / 40`` on any model.

Example:
    >>> import torch
    >>> add = AddVector(vector=torch.ones(4), coeff=2.0, positions="last")
    >>> add(torch.zeros(1, 3, 4), hook=None)[0, :, 0].tolist()
    [0.0, 0.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

LayerSpec = int | float
Positions = Literal["last", "all"] | Sequence[int] | Tensor

#: Hook kinds inside block ``L`` and their TransformerLens names.
BLOCK_HOOKS: dict[str, str] = {
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
    "attn_out": "blocks.{L}.hook_attn_out",
    "mlp_in": "blocks.{L}.hook_mlp_in",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "pattern": "blocks.{L}.attn.hook_pattern",
    "z": "blocks.{L}.attn.hook_z",
}


def resolve_layer(n_layers: int, layer: LayerSpec) -> int:
    """A block index from an int or a fraction of depth.

    A float ``f`` in ``[0, 1]`` maps to ``round(f * n_layers)``, clamped to the last block,
    so ``15 / 40`` is block 15 of a 40-layer model and block 1 of a 2-layer one.

    Raises:
        ValueError: for an index outside the model or a fraction outside [0, 1].

    Example:
        >>> resolve_layer(40, 15 / 40), resolve_layer(2, 15 / 40), resolve_layer(2, -1)
        (15, 1, 1)
    """
    if isinstance(layer, bool):
        raise ValueError("layer must be an int or a float, not a bool")
    if isinstance(layer, float):
        if not 0.0 <= layer <= 1.0:
            raise ValueError(f"layer fraction {layer} is outside [0, 1]")
        return min(round(layer * n_layers), n_layers - 1)
    index = layer + n_layers if layer < 0 else layer
    if not 0 <= index < n_layers:
        raise ValueError(f"layer {layer} is outside a model with {n_layers} layers")
    return index


def hook_name(kind: str, layer: LayerSpec, n_layers: int) -> str:
    """The TransformerLens hook name of a kind at a layer.

    Example:
        >>> hook_name("resid_post", 0.5, 40)
        'blocks.20.hook_resid_post'
    """
    if kind not in BLOCK_HOOKS:
        raise ValueError(f"unknown hook kind {kind!r}; expected one of {', '.join(BLOCK_HOOKS)}")
    return BLOCK_HOOKS[kind].format(L=resolve_layer(n_layers, layer))


def position_mask(
    positions: Positions, batch: int, pos: int, last: Int[Tensor, " batch"] | None = None
) -> Bool[Tensor, "batch pos"]:
    """Which (row, position) pairs a selector picks.

    Args:
        positions: ``"last"`` (each row's last real token: ``last`` if given, else the final
            position, which is right for left padding), ``"all"``, a list of indices (negative
            counts from the end), or a boolean mask ``[batch, pos]`` (e.g. a fact's token span).
        batch: Rows.
        pos: Sequence length.
        last: Per-row last real index (right padding).

    Example:
        >>> position_mask("last", 2, 3, last=torch.tensor([1, 2])).int().tolist()
        [[0, 1, 0], [0, 0, 1]]
    """
    mask = torch.zeros(batch, pos, dtype=torch.bool)
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        if positions.shape != (batch, pos):
            raise ValueError(f"position mask shape {tuple(positions.shape)} != {(batch, pos)}")
        return positions.cpu()
    if positions == "last":
        idx = last.cpu() if last is not None else torch.full((batch,), pos - 1)
        mask[torch.arange(batch), idx] = True
    elif positions == "all":
        mask[:] = True
    else:
        mask[:, [int(i) for i in positions]] = True
    return mask


def _mask_like(act: Tensor, positions: Positions, last: Tensor | None) -> Tensor:
    mask = position_mask(positions, act.shape[0], act.shape[1], last).to(act.device)
    return mask.view(*mask.shape, *([1] * (act.dim() - 2)))


@dataclass
class AddVector:
    """Add ``coeff * vector`` to the activation at the selected positions (steering, S1).

    A negative ``coeff`` subtracts.
    """

    vector: Float[Tensor, " d"]
    coeff: float = 1.0
    positions: Positions = "last"
    last: Int[Tensor, " batch"] | None = None

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the steered activation."""
        delta = (self.coeff * self.vector).to(act.device, act.dtype)
        return act + _mask_like(act, self.positions, self.last) * delta


def draw_noise(
    d: int,
    kind: Literal["uniform", "gaussian", "sphere"] = "uniform",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, " d"]:
    """One seeded noise vector of unit norm.

    ``uniform`` is U[0, 1]^d as in Poser (not zero-mean: mostly along the all-ones
    direction), ``gaussian`` N(0, 1)^d, ``sphere`` uniform on the unit sphere (a normalised
    Gaussian; the same direction as ``gaussian`` for one seed, kept for clarity).

    Example:
        >>> float(draw_noise(16, "gaussian", seed=1).norm())
        1.0
    """
    gen = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        v = torch.rand(d, generator=gen, dtype=torch.float64)
    elif kind in ("gaussian", "sphere"):
        v = torch.randn(d, generator=gen, dtype=torch.float64)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return (v / v.norm()).to(dtype)


@dataclass
class AddNoise:
    """Add seeded noise of a chosen norm at the selected positions (S2).

    The noise vector (unit norm, from :func:`draw_noise`) is scaled to ``norm`` (an absolute
    norm, e.g. that of the S1 direction) or, if ``relative`` is set, to that fraction of each
    activation's own norm; then multiplied by ``coeff``.
    """

    d: int
    kind: Literal["uniform", "gaussian", "sphere"] = "uniform"
    norm: float = 1.0
    relative: float | None = None
    coeff: float = 1.0
    seed: int = 0
    positions: Positions = "last"
    last: Int[Tensor, " batch"] | None = None
    _unit: Tensor | None = field(default=None, init=False, repr=False)

    @property
    def unit(self) -> Float[Tensor, " d"]:
        """The unit noise direction (drawn once)."""
        if self._unit is None:
            self._unit = draw_noise(self.d, self.kind, seed=self.seed)
        return self._unit

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the activation with noise added."""
        unit = self.unit.to(act.device, act.dtype)
        if self.relative is not None:
            scale = self.relative * act.norm(dim=-1, keepdim=True)
        else:
            scale = torch.tensor(self.norm, device=act.device, dtype=act.dtype)
        return act + _mask_like(act, self.positions, self.last) * (self.coeff * scale * unit)


@dataclass
class Ablate:
    """Zero, mean-replace, or remove a direction from the activation at selected positions.

    ``mode="direction"`` projects out ``direction`` (normalised here).
    """

    mode: Literal["zero", "mean", "direction"] = "zero"
    mean: Tensor | None = None
    direction: Tensor | None = None
    positions: Positions = "all"
    last: Int[Tensor, " batch"] | None = None

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the ablated activation."""
        if self.mode == "zero":
            new = torch.zeros_like(act)
        elif self.mode == "mean":
            if self.mean is None:
                raise ValueError("mean ablation needs `mean`")
            new = self.mean.to(act.device, act.dtype).expand_as(act)
        elif self.mode == "direction":
            if self.direction is None:
                raise ValueError("direction ablation needs `direction`")
            u = self.direction.to(act.device, act.dtype)
            u = u / u.norm()
            new = act - (act @ u).unsqueeze(-1) * u
        else:
            raise ValueError(f"unknown ablation mode {self.mode!r}")
        return torch.where(_mask_like(act, self.positions, self.last), new, act)


@dataclass
class Patch:
    """Replace the activation with a stored one (same shape) at the selected positions."""

    source: Tensor
    positions: Positions = "all"
    last: Int[Tensor, " batch"] | None = None

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the patched activation."""
        if self.source.shape != act.shape:
            raise ValueError(f"patch source {tuple(self.source.shape)} != {tuple(act.shape)}")
        src = self.source.to(act.device, act.dtype)
        return torch.where(_mask_like(act, self.positions, self.last), src, act)


@dataclass
class Record:
    """Store a detached copy of the activation under ``key`` (default: the hook's name)."""

    store: dict[str, Tensor]
    key: str | None = None
    to_cpu: bool = True

    def __call__(self, act: Tensor, hook: Any) -> None:
        """Record and leave the activation unchanged."""
        value = act.detach()
        self.store[self.key or hook.name] = value.cpu() if self.to_cpu else value


@contextmanager
def applied(model: Any, hooks: Sequence[tuple[str, Any]]) -> Iterator[Any]:
    """Apply (name, hook function) pairs for the duration of a ``with`` block.

    A thin alias of ``model.hooks(fwd_hooks=...)``: hooks added here are removed on exit,
    also after an exception, and never touch hooks added by an enclosing block.

    Example:
        >>> # with applied(model, [("blocks.0.hook_resid_post", AddVector(v, 4.0))]):
        >>> #     logits = model(tokens)
    """
    with model.hooks(fwd_hooks=list(hooks)) as m:
        yield m
