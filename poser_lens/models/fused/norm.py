"""Fused LayerNorms for the tiny models: two kernels when nothing reads the norm's scale.

TransformerLens's bridge computes every LayerNorm from scratch in Python (centre,
square, mean, square root, divide, scale, shift: each a pass over the activations, and as many
again backward) so that ``hook_scale`` and ``hook_normalized`` can see and edit the inside of
the norm. On the tiny models that is about 8% of a model's scoring on one CPU thread (under
cProfile).
:class:`FusedNorm` is the bridge's norm with one change: when no hook or observer is on its
``hook_scale`` (and no global module hook is set), it runs two kernels: the normalisation
(:func:`torch.nn.functional.layer_norm`), then, after ``hook_normalized``, the scale and shift;
otherwise (or inside :func:`~poser_lens.models.fused.base.eager`) it runs the bridge's code
unchanged. ``hook_in``, ``hook_normalized`` and ``hook_out`` fire the same either way, and a
hook that reads ``hook_normalized`` changes no number. The bridge of a tiny model is built with
it (:func:`poser_lens.models.fused.fuse_bridge`).

The two paths compute the same function and agree to float32 rounding
(tests/models/test_norm.py); which one runs depends only on the hooks, never on the data. RMS
norms are left as they are: the bridge already runs their module's own forward
(``RMSNormalizationBridge``).

Example:
    >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["a b"])
    >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
    >>> model = wrap(build_native(cfg, len(tok)), tok)
    >>> type(model.ln_final).__name__
    'FusedNorm'
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens.model_bridge import NormalizationBridge

from poser_lens.models.fused.base import Kind, is_observed


class FusedNorm(NormalizationBridge):
    """The bridge's LayerNorm in two kernels whenever ``hook_scale`` is unread.

    The fused path fires ``hook_in``, normalises with one kernel
    (:func:`torch.nn.functional.layer_norm` without its scale and shift), passes the result
    through ``hook_normalized`` (which may read or edit it, as on the bridge's path), applies
    the scale and shift in one more (:func:`torch.addcmul`) and fires ``hook_out``. It takes
    the same steps whether or not a hook is on ``hook_normalized``, so reading it (an adapter
    reads it) changes no number. It covers a plain ``nn.LayerNorm`` (with its scale) on float32
    or float64 activations of the weight's dtype, on the bridge's own path (no native-autograd
    norm, no folded norms); anything else, a hook on ``hook_scale`` or
    :func:`~poser_lens.models.fused.base.eager` takes
    :class:`~transformer_lens.model_bridge.NormalizationBridge`'s forward. Which path runs is
    settled on the input, before ``hook_in`` fires. A :class:`Fusable
    <poser_lens.models.fused.base.Fusable>` module.
    """

    fuses: ClassVar[Kind] = "norm"
    fusion: bool

    def __init__(
        self,
        name: str,
        config: Any,
        submodules: dict[str, Any] | None = None,
        use_native_layernorm_autograd: bool = False,
        optional: bool = False,
    ) -> None:
        super().__init__(
            name,
            config,
            submodules=submodules if submodules is not None else {},
            use_native_layernorm_autograd=use_native_layernorm_autograd,
            optional=optional,
        )
        self.fusion = True

    def _fusable(self, x: Tensor) -> bool:
        component = self.original_component
        return (
            type(component) is nn.LayerNorm
            and component.elementwise_affine
            and not self.uses_rms_norm
            and not self.uses_weight_offset
            and not self.use_native_layernorm_autograd
            and not getattr(self.config, "layer_norm_folding", False)
            and x.dtype in (torch.float32, torch.float64)
            and self.weight.dtype == x.dtype
            and self.fusion
            and not is_observed(self.hook_scale)
        )

    def forward(self, hidden_states: Tensor, **kwargs: Any) -> Tensor:
        """The normalised ``hidden_states``, fused when nothing reads the scale."""
        if not self._fusable(hidden_states):
            return super().forward(hidden_states, **kwargs)
        hidden_states = self.hook_in(hidden_states)
        # The bridge's own path reads eps from the config; so does this one.
        eps = float(getattr(self.config, "eps", 1e-05))
        normalized = F.layer_norm(hidden_states, (hidden_states.shape[-1],), eps=eps)
        normalized = self.hook_normalized(normalized)
        bias: Any = getattr(self.original_component, "bias", None)
        if bias is None:
            result = normalized * self.weight
        else:
            result = torch.addcmul(bias, normalized, self.weight)
        return self.hook_out(result)
