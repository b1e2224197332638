"""What the fused kernels share: :func:`is_observed`, the :class:`Fusable` protocol, :func:`eager`.

A fused module (:class:`~poser_lens.models.fused.attention.FusedAttention`,
:class:`~poser_lens.models.fused.norm.FusedNorm`) runs TransformerLens's eager code whenever a
hook could see what the fused kernel skips (:func:`is_observed`), or while its ``fusion`` is
off; :func:`eager` turns it off for the modules of a model, for comparisons bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast, runtime_checkable

from torch import nn
from torch.nn.modules import module as torch_module

#: What a fused module fuses; :func:`eager` picks by it.
Kind = Literal["attention", "norm"]

#: The registries of torch's global module hooks (``register_module_forward_hook`` and its
#: siblings): a hook there sees every module, hook points included. torch keeps them private;
#: ``tests/models/test_fused.py`` checks that they are still where :func:`is_observed` reads them.
GLOBAL_HOOK_REGISTRIES = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)
#: The per-module hook registries of ``nn.Module`` (also private, also checked there).
MODULE_HOOK_REGISTRIES = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)

M = TypeVar("M", bound=nn.Module)


def is_observed(point: Any) -> bool:
    """Whether a forward through ``point`` (a hook point, or any callable) could be seen.

    A hook point with no forward, pre-forward or backward hooks of its own, while no global
    module hook is set, is an identity nobody reads; anything else (another callable, a hooked
    point) counts as observed.

    Example:
        >>> from transformer_lens.hook_points import HookPoint
        >>> point = HookPoint()
        >>> is_observed(point), is_observed(None)
        (False, False)
        >>> _ = point.register_forward_hook(lambda *a: None)
        >>> is_observed(point)
        True
    """
    if point is None:
        return False
    if not isinstance(point, nn.Module):
        return True
    return any(getattr(point, name) for name in MODULE_HOOK_REGISTRIES) or any(
        getattr(torch_module, name) for name in GLOBAL_HOOK_REGISTRIES
    )


@runtime_checkable
class Fusable(Protocol):
    """A module with a fused path beside TransformerLens's eager one.

    Attributes:
        fuses: What it fuses (a class attribute, so a wrapper that forwards attribute reads
            to the module it wraps is not taken for it).
        fusion: Whether the fused path may run (``True`` when built); :func:`eager` turns it
            off. The eager path runs anyway whenever a hook could see the difference.
    """

    fuses: ClassVar[Kind]
    fusion: bool


def fusables(model: nn.Module, kinds: tuple[Kind, ...] = ("attention", "norm")) -> list[Fusable]:
    """The modules of ``model`` (native or wrapped) that fuse one of ``kinds``, in order.

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native
        >>> net = build_native(TinyConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16), 10)
        >>> [type(m).__name__ for m in fusables(net)]
        ['FusedAttention', 'FusedAttention']
    """
    return [cast(Fusable, m) for m in model.modules() if getattr(type(m), "fuses", None) in kinds]


@contextmanager
def eager(model: M, *, norms: bool = True) -> Iterator[M]:
    """Run every fused attention and norm of ``model`` (native or wrapped) eagerly in the block.

    For comparisons bit for bit with a forward that reads the patterns or the norms' scales
    (which runs eagerly); the fused paths return on exit, also after an exception. With
    ``norms=False`` only the attention runs eagerly (the forward of a cache that holds the
    patterns and nothing of the norms).

    Example:
        >>> import torch
        >>> from poser_lens.models.tiny import TinyConfig, build_native
        >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
        >>> fused, plain = build_native(cfg, 10), build_native(cfg, 10, fused=False)
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> with eager(fused):
        ...     same = torch.equal(fused(ids), plain(ids))
        >>> same
        True
    """
    inner = fusables(model, ("attention", "norm") if norms else ("attention",))
    before = [m.fusion for m in inner]
    for m in inner:
        m.fusion = False
    try:
        yield model
    finally:
        for m, was in zip(inner, before, strict=True):
            m.fusion = was
