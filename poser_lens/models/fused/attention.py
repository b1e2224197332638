"""Fused attention for the tiny models: one kernel when nothing reads the attention pattern.

TransformerLens's native attention computes the scores, masks them, softmaxes, masks again and
multiplies by the values, eagerly, so that ``hook_pattern`` can see (and edit) the pattern. On
the tiny models that sequence is most of a forward pass (70-85% of it on one CPU thread at
sequence lengths 120-190, against 2-5x less for one
:func:`torch.nn.functional.scaled_dot_product_attention` call). :class:`FusedAttention` is the
native attention with one change: when no hook or observer is on the block's ``hook_pattern`` or
``hook_attn_scores`` (or any global module hook is set), it runs the fused kernel and returns an
empty pattern; otherwise (or inside :func:`~poser_lens.models.fused.base.eager`) it runs the
native code unchanged, so a hook that reads or edits the pattern sees exactly what it saw
before. Every other hook point (``hook_q``, ``hook_z``, ``hook_out``, ...) fires the same either
way, since the projections are the same submodules.

Both halves are built with the model, through TransformerLens's own seams: :func:`fuse_attention`
gives a freshly built native model a :class:`FusedAttention` per block (constructed like the
native one, same weights), and the bridge wraps each in a :class:`FusedAttentionBridge`, which
tells it whether ``hook_attn_scores`` is read (the bridge feeds that hook from the pattern the
attention returns, after the fact).

The two paths agree to float32 rounding (tests/models/test_attention.py); which one ran never
depends on the data, only on the hooks, so a run is as reproducible as before.

Example:
    >>> from poser_lens.models.tiny import TinyConfig, build_native
    >>> net = build_native(TinyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32), 10)
    >>> type(net.layers[0].attn).__name__
    'FusedAttention'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.model_bridge import AttentionBridge
from transformer_lens.model_bridge.sources.native import NativeAttention, NativeModel

from poser_lens.models.fused.base import Kind, is_observed

if TYPE_CHECKING:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources.native.model import NativeRotary


class FusedAttention(NativeAttention):
    """Native attention that runs the fused kernel whenever the pattern is unobserved.

    The fused path covers the tiny models' architecture (learned positions, one key/value head
    per head, no score soft-capping); any other configuration always takes the native path.
    Constructed as :class:`~transformer_lens.model_bridge.sources.native.NativeAttention` is
    (:meth:`like` builds one in place of a native attention). A :class:`Fusable
    <poser_lens.models.fused.base.Fusable>` module.
    """

    fuses: ClassVar[Kind] = "attention"
    fusion: bool

    def __init__(self, cfg: TransformerBridgeConfig, rotary: NativeRotary | None = None) -> None:
        super().__init__(cfg, rotary=rotary)
        self.fusion = True

    @classmethod
    def like(cls, native: NativeAttention) -> FusedAttention:
        """A fused attention with ``native``'s config, rotary table, weights, device and dtype.

        Its construction draws nothing from the caller's random stream.
        """
        with torch.random.fork_rng(devices=[]):
            fused = cls(native.cfg, rotary=native.rotary)
        weight = native.q.weight
        fused.to(device=weight.device, dtype=weight.dtype)
        fused.load_state_dict(native.state_dict())
        fused.train(native.training)
        return fused

    def _fusable(self) -> bool:
        return self.rotary is None and self.kv_repeats == 1 and self.attn_scores_soft_cap <= 0

    def forward(
        self,
        hidden_states: Float[Tensor, "batch pos d_model"],
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        pattern_fn: Any = None,
        *,
        scores_read: bool = False,
        **kwargs: Any,
    ) -> tuple[Float[Tensor, "batch pos d_model"], Tensor]:
        """``(output, pattern)``; the pattern is empty when the fused kernel ran.

        ``pattern_fn`` is the bridge's ``hook_pattern``; ``scores_read`` says that its
        ``hook_attn_scores``, fed from the pattern returned, is read
        (:class:`FusedAttentionBridge`). An empty pattern is no 4-D tensor, so the bridge fires
        no post-hoc hook with it.
        """
        if not self.fusion or not self._fusable() or is_observed(pattern_fn) or scores_read:
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
                blocked = blocked | _blocked_by(attention_mask)
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked, scale=scale)
            # A query that may attend to nothing (padding) adds nothing, as in the native path.
            z = z.masked_fill(blocked.all(-1, keepdim=True), 0.0)
        out = self.o(z.transpose(1, 2).reshape(batch, seq, self.n_heads * self.d_head))
        return out, out.new_empty(0)


def _blocked_by(attention_mask: Tensor) -> Tensor:
    """The positions an external ``attention_mask`` blocks (``True``), broadcastable to the scores.

    The native attention's reading of a mask: a 2-D ``[batch, key]`` padding mask (1 keeps, 0
    blocks), a 4-D boolean mask (``True`` blocks) or a 4-D additive float mask (values below -1
    block). ``tests/models/test_fused.py`` holds it to the native attention's on each kind.
    """
    if attention_mask.dim() == 2:
        return ~attention_mask.bool()[:, None, None, :]
    if attention_mask.dim() == 4:
        if attention_mask.dtype is torch.bool:
            return attention_mask
        return attention_mask < -1.0
    raise ValueError(
        "attention_mask must be 2D [batch, seq] or 4D [batch, *, seq, seq], "
        f"got shape {tuple(attention_mask.shape)}."
    )


class FusedAttentionBridge(AttentionBridge):
    """TransformerLens's attention bridge, telling a :class:`FusedAttention` when it is read.

    The bridge hands the attention its ``hook_pattern`` (as ``pattern_fn``) but fires
    ``hook_attn_scores`` afterwards, from the pattern the attention returns; this bridge also
    passes ``scores_read``, so a hook there makes the attention return one. Everything else is
    :class:`~transformer_lens.model_bridge.AttentionBridge`'s.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The bridge's forward, with ``scores_read`` for the attention it wraps."""
        if isinstance(self.original_component, FusedAttention):
            kwargs["scores_read"] = is_observed(self.hook_attn_scores)
        return super().forward(*args, **kwargs)


def fuse_attention(net: NativeModel) -> NativeModel:
    """Give every block of a native model a :class:`FusedAttention` in place of its own.

    Each is built by :meth:`FusedAttention.like` (same config, weights and buffers), so
    parameters and state-dict keys are unchanged; returns ``net``.
    """
    for block in net.layers:
        if type(block.attn) is NativeAttention:
            block.attn = FusedAttention.like(block.attn)
    return net
