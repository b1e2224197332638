"""Fused attention for the tiny models: one kernel when nothing reads the attention pattern.

TransformerLens's native attention computes the scores, masks them, softmaxes, masks again and
multiplies by the values, eagerly, so that ``hook_pattern`` can see (and edit) the pattern. On
the tiny models that sequence is most of a forward pass (70-85% of it on one CPU thread at
sequence lengths 120-190, against 2-5x less for one
:func:`torch.nn.functional.scaled_dot_product_attention` call). :class:`FusedAttention` is the
native attention with one change: when no hook or observer is on the block's ``hook_pattern`` or
``hook_attn_scores`` (or any global module hook is set), it runs the fused kernel and returns an
empty pattern; otherwise (or inside :func:`eager`) it runs the native code unchanged, so a hook
that reads or edits the pattern sees exactly what it saw before. Every other hook point
(``hook_q``, ``hook_z``, ``hook_out``, ...) fires the same either way, since the projections are
the same submodules.

The two paths agree to float32 rounding (tests/models/test_attention.py); which one ran never
depends on the data, only on the hooks, so a run is as reproducible as before.

Example:
    >>> import torch
    >>> from poser_lens.models.tiny import TinyConfig, build_native
    >>> net = build_native(TinyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32), 10)
    >>> type(net.layers[0].attn).__name__
    'FusedAttention'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.model_bridge.sources.native.model import NativeAttention, NativeModel


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
    from torch.nn.modules import module as torch_module

    return bool(
        point._forward_hooks
        or point._forward_pre_hooks
        or point._backward_hooks
        or point._backward_pre_hooks
        or torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
        or torch_module._global_backward_hooks
        or torch_module._global_backward_pre_hooks
    )


class Fusable:
    """Marker of a module with a fused path (:class:`FusedAttention`, ``models.norm.FusedNorm``).

    :func:`eager` switches the fused path of every such module off, by a flag in its
    ``__dict__`` (``_eager``).
    """


class FusedAttention(Fusable, NativeAttention):
    """Native attention that runs the fused kernel whenever the pattern is unobserved.

    The fused path covers the tiny models' architecture (learned positions, one key/value head
    per head, no score soft-capping); any other configuration always takes the native path.
    :func:`watch` registers the bridge's post-hoc hook points (``hook_attn_scores``), which the
    native path feeds from the pattern it returns.
    """

    def _fusable(self) -> bool:
        return self.rotary is None and self.kv_repeats == 1 and self.attn_scores_soft_cap <= 0

    def forward(
        self,
        hidden_states: Float[Tensor, "batch pos d_model"],
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        pattern_fn: Any = None,
        **kwargs: Any,
    ) -> tuple[Float[Tensor, "batch pos d_model"], Tensor]:
        """``(output, pattern)``; the pattern is empty when the fused kernel ran.

        An empty pattern is no 4-D tensor, so the bridge fires no post-hoc hook with it.
        """
        watchers = self.__dict__.get("_watchers", ())
        if (
            self.__dict__.get("_eager", False)
            or not self._fusable()
            or is_observed(pattern_fn)
            or any(is_observed(point) for point in watchers)
        ):
            return super().forward(
                hidden_states,
                attention_mask=attention_mask,
                position_ids=position_ids,
                pattern_fn=pattern_fn,
                **kwargs,
            )
        batch, seq, _ = hidden_states.shape

        def heads(proj: nn.Module) -> Tensor:
            return proj(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)

        q, k, v = heads(self.q), heads(self.k), heads(self.v)
        scale = 1.0 / self.scale
        if attention_mask is None and self.causal:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        else:
            blocked = (
                self.causal_mask[:seq, :seq]
                if self.causal
                else torch.zeros(seq, seq, dtype=torch.bool, device=q.device)
            )
            if attention_mask is not None:
                blocked = self._combine_attention_mask(blocked, attention_mask, batch=batch)
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked, scale=scale)
            # A query that may attend to nothing (padding) adds nothing, as in the native path.
            z = z.masked_fill(blocked.all(-1, keepdim=True), 0.0)
        out = self.o(z.transpose(1, 2).reshape(batch, seq, self.n_heads * self.d_head))
        return out, out.new_empty(0)


def fuse(net: NativeModel) -> NativeModel:
    """Make every attention of a native model a :class:`FusedAttention` (in place).

    Parameters, buffers and state-dict keys are unchanged; returns ``net``.
    """
    for block in net.layers:
        if type(block.attn) is NativeAttention:
            block.attn.__class__ = FusedAttention
    return net


def watch(model: Any) -> Any:
    """Tell each fused attention of a wrapped model which post-hoc hook points read its pattern.

    TransformerLens's bridge feeds ``hook_attn_scores`` from the pattern the attention returns,
    after the fact; with a hook there, the attention must return one. Returns ``model``.
    """
    for block in getattr(model, "blocks", ()):
        inner = getattr(block.attn, "original_component", None)
        if isinstance(inner, FusedAttention):
            # A plain tuple in __dict__: not registered as a submodule, so no new hook names.
            inner.__dict__["_watchers"] = (block.attn.hook_attn_scores,)
    return model


@contextmanager
def eager(model: nn.Module, *, norms: bool = True) -> Iterator[nn.Module]:
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
    inner = [
        m
        for m in model.modules()
        if isinstance(m, FusedAttention) or (norms and isinstance(m, Fusable))
    ]
    before = [m.__dict__.get("_eager", False) for m in inner]
    for m in inner:
        m.__dict__["_eager"] = True
    try:
        yield model
    finally:
        for m, was in zip(inner, before, strict=True):
            m.__dict__["_eager"] = was
