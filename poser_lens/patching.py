"""Activation patching, attention onto token spans, and gradient saliency.

Example:
    >>> # effect = patch_grid(model, clean, corrupt, metric, kind="resid_pre")  # [layer, pos]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from poser_lens.hooks import Patch, applied, hook_name, position_mask

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, ""]]


@torch.no_grad()
def patch_grid(
    model: Any,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    kind: str = "resid_pre",
) -> Float[Tensor, "layer pos"]:
    """Metric of the clean run with one (layer, position) taken from the corrupt run.

    Both inputs must have the same shape (token-aligned prompts). Entry ``[L, p]`` is the
    metric when the ``kind`` activation of block ``L`` at position ``p`` is patched in.

    Args:
        model: A hooked model.
        clean: Tokens of the run that is patched.
        corrupt: Tokens of the run activations come from.
        metric: Logits -> scalar (e.g. a logit difference at the last token).
        kind: Hook kind (see :data:`poser_lens.hooks.BLOCK_HOOKS`), e.g. ``resid_pre``,
            ``attn_out``, ``mlp_out``.
    """
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} differ")
    n_layers = model.cfg.n_layers
    names = [hook_name(kind, layer, n_layers) for layer in range(n_layers)]
    _, cache = model.run_with_cache(corrupt, names_filter=lambda n: n in names)
    batch, pos = clean.shape
    out = torch.zeros(n_layers, pos)
    for layer, name in enumerate(names):
        for p in range(pos):
            mask = position_mask([p], batch, pos)
            with applied(model, [(name, Patch(cache[name], positions=mask))]):
                out[layer, p] = float(metric(model(clean)))
    return out


@torch.no_grad()
def attention_to_span(
    model: Any, tokens: Int[Tensor, "batch pos"], span: Bool[Tensor, "batch pos"]
) -> Float[Tensor, "batch layer head"]:
    """Attention from the last position onto the tokens of a span, per layer and head.

    ``span`` marks the key positions (e.g. the tokens of the critical fact); the result is the
    summed attention weight on them (a fraction in [0, 1]).
    """
    n_layers = model.cfg.n_layers
    names = [hook_name("pattern", layer, n_layers) for layer in range(n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    key = span.to(torch.float32)[:, None, :]  # [batch, 1, pos]
    per_layer = [(cache[n][:, :, -1, :].float().cpu() * key).sum(-1) for n in names]
    return torch.stack(per_layer, dim=1)


def gradient_saliency(
    model: Any, tokens: Int[Tensor, "batch pos"], metric: Metric
) -> Float[Tensor, "batch pos"]:
    """Norm of the metric's gradient with respect to each token's embedding (Poser Fig 9)."""
    store: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> Tensor:
        leaf = act.detach().requires_grad_(True)
        store["embed"] = leaf
        return leaf

    with applied(model, [("hook_embed", grab)]):
        value = metric(model(tokens))
    (grad,) = torch.autograd.grad(value, store["embed"])
    return grad.norm(dim=-1).detach().cpu()
