"""Fused LayerNorms for the tiny models: two kernels when nothing reads the norm's scale.

TransformerLens's bridge computes every LayerNorm from scratch in Python (centre,
square, mean, square root, divide, scale, shift: each a pass over the activations, and as many
again backward) so that ``hook_scale`` and ``hook_normalized`` can see and edit the inside of
the norm. On the tiny models that is about 8% of a model's scoring on one CPU thread (under
cProfile).
:class:`FusedNorm` is the bridge's norm with one change: when no hook or observer is on its
``hook_scale`` (and no global module hook is set), it runs two kernels: the normalisation
(:func:`torch.nn.functional.layer_norm`), then, after ``hook_normalized``, the scale and shift;
otherwise (or inside :func:`~poser_lens.models.attention.eager`) it runs the bridge's code
unchanged. ``hook_in``, ``hook_normalized`` and ``hook_out`` fire the same either way, and a
hook that reads ``hook_normalized`` changes no number.

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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens.model_bridge.generalized_components.normalization import (
    NormalizationBridge,
)

from poser_lens.models.attention import Fusable, is_observed


class FusedNorm(Fusable, NormalizationBridge):
    """The bridge's LayerNorm in two kernels whenever ``hook_scale`` is unread.

    The fused path normalises with one kernel (:func:`torch.nn.functional.layer_norm` without
    its scale and shift), passes the result through ``hook_normalized`` (which may read or
    edit it, as on the bridge's path) and applies the scale and shift in one more
    (:func:`torch.addcmul`). It takes the same steps whether or not a hook is on
    ``hook_normalized``, so reading it (an adapter reads it) changes no number. It covers a
    plain ``nn.LayerNorm`` (with its scale) on float32 or float64 activations of the weight's
    dtype; anything else, a hook on ``hook_scale`` or :func:`~poser_lens.models.attention.eager`
    takes the bridge's path.
    """

    def _fusable(self, x: Tensor) -> bool:
        component = self.original_component
        return (
            type(component) is nn.LayerNorm
            and component.elementwise_affine
            and not self.uses_rms_norm
            and not self.uses_weight_offset
            and x.dtype in (torch.float32, torch.float64)
            and self.weight.dtype == x.dtype
            and not self.__dict__.get("_eager", False)
            and not is_observed(self.hook_scale)
        )

    def _python_norm_forward(self, hidden_states: Tensor) -> Tensor:
        if not self._fusable(hidden_states):
            return super()._python_norm_forward(hidden_states)
        # The bridge's own path reads eps from the config; so does this one.
        eps = float(getattr(self.config, "eps", 1e-05))
        normalized = F.layer_norm(hidden_states, (hidden_states.shape[-1],), eps=eps)
        normalized = self.hook_normalized(normalized)
        bias: Any = getattr(self.original_component, "bias", None)
        if bias is None:
            return normalized * self.weight
        return torch.addcmul(bias, normalized, self.weight)


def fuse_norms(model: Any) -> Any:
    """Make every LayerNorm of a wrapped (bridge) model a :class:`FusedNorm` (in place).

    Parameters and hook names are unchanged; returns ``model``.
    """
    for module in model.modules():
        if type(module) is NormalizationBridge:
            module.__class__ = FusedNorm
    return model
