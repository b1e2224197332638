"""The tiny models' fused kernels, built with the model through TransformerLens's seams.

A tiny model (:mod:`poser_lens.models.tiny`) runs TransformerLens's native transformer, whose
attention and the bridge's LayerNorms compute eagerly so that hooks can see their insides. Its
fused modules run one or two kernels instead whenever no hook could see the difference, and
TransformerLens's own code otherwise:

* :mod:`~poser_lens.models.fused.base`: :func:`is_observed` (could a hook point be seen?), the
  :class:`Fusable` protocol of a fused module, and :func:`eager` (run a model's fused modules
  eagerly in a block, for comparisons bit for bit);
* :mod:`~poser_lens.models.fused.attention`: :class:`FusedAttention` (a native attention with a
  ``scaled_dot_product_attention`` path) and :class:`FusedAttentionBridge` (the bridge's
  attention, which tells it when ``hook_attn_scores`` is read);
* :mod:`~poser_lens.models.fused.norm`: :class:`FusedNorm` (the bridge's LayerNorm with a
  ``layer_norm`` path).

They are built, not patched in: :func:`fuse_attention` gives a freshly built native model its
fused attentions (``tiny.build_native``), and :func:`fuse_bridge`, passed to TransformerLens's
``build_bridge_from_module`` as its ``post_adapter_hook`` (its documented seam for changing an
adapter's components), builds the bridge with the fused bridge components (``tiny.wrap``).
TransformerLens is pinned to one minor version; ``tests/models/test_fused.py`` checks what these
seams assume of it.

Example:
    >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["a b"])
    >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
    >>> model = wrap(build_native(cfg, len(tok)), tok)
    >>> [type(m).__name__ for m in fusables(model)]
    ['FusedNorm', 'FusedAttention', 'FusedNorm', 'FusedNorm']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformer_lens.model_bridge import AttentionBridge, NormalizationBridge

from poser_lens.models.fused.attention import FusedAttention, FusedAttentionBridge, fuse_attention
from poser_lens.models.fused.base import Fusable, eager, fusables, is_observed
from poser_lens.models.fused.norm import FusedNorm

if TYPE_CHECKING:
    from transformer_lens.model_bridge import ArchitectureAdapter
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

__all__ = [
    "Fusable",
    "FusedAttention",
    "FusedAttentionBridge",
    "FusedNorm",
    "eager",
    "fusables",
    "fuse_attention",
    "fuse_bridge",
    "is_observed",
]


def _fused(component: GeneralizedComponent) -> GeneralizedComponent:
    """``component`` (a bridge template) with its LayerNorms and attentions fused, recursively."""
    if type(component) is NormalizationBridge:
        return FusedNorm(
            component.name or "",
            component.config,
            submodules=component.submodules,
            use_native_layernorm_autograd=component.use_native_layernorm_autograd,
            optional=component.optional,
        )
    if type(component) is AttentionBridge:
        return FusedAttentionBridge(
            component.name,
            component.config,
            submodules=component.submodules,
            optional=component.optional,
        )
    for key, sub in component.submodules.items():
        component.submodules[key] = _fused(sub)
    return component


def fuse_bridge(adapter: ArchitectureAdapter) -> None:
    """Build a tiny model's bridge with :class:`FusedNorm` and :class:`FusedAttentionBridge`.

    A ``post_adapter_hook`` for ``build_bridge_from_module``: it replaces the plain LayerNorm
    (``NormalizationBridge``) and attention (``AttentionBridge``) templates of the native
    adapter's component mapping, before the bridge is set up from them, by fused ones made from
    the same name, config and submodules. RMS and parameter-free norms keep their bridges.
    """
    mapping = adapter.component_mapping or {}
    for key, component in mapping.items():
        mapping[key] = _fused(component)
