"""Batched activation collection at chosen hook points and positions.

Prompts of unequal length are right padded and each row is read at its own last real token
(or at any positions a mask selects). In a causal model real tokens never attend to padding on
their right, so no attention mask is needed and batched results equal one-at-a-time ones (a
test checks this). The forward stops after the last block that is needed, and results move to
the CPU batch by batch.

Example:
    >>> # acts = collect(model, tok, prompts)          # [prompt, n_layers + 1, d_model]
    >>> # acts[:, 0] is the embedding, acts[:, L + 1] is blocks.L.hook_resid_post
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from poser_lens.models.training import encode


def residual_hook_names(n_layers: int) -> list[str]:
    """The embedding (``blocks.0.hook_resid_pre``) and every block's ``hook_resid_post``.

    Index ``i`` matches Hugging Face ``hidden_states[i]`` for ``i < n_layers`` (the last HF
    state has the final norm applied; this one does not).

    Example:
        >>> residual_hook_names(2)
        ['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
    """
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def _block_of(name: str) -> int:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" else -1


@torch.no_grad()
def collect(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    hook_names: Sequence[str] | None = None,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> Float[Tensor, "prompt hook d_model"]:
    """Activations at each prompt's last token, for several hook points, batched.

    Args:
        model: A hooked model (``TransformerBridge``).
        tokenizer: Its tokenizer (BOS handled by the tokenizer, as in training).
        prompts: Input texts.
        hook_names: Hook points to read (default: :func:`residual_hook_names`).
        batch_size: Prompts per forward pass.
        device: Where to run (default: the model's device).

    Returns:
        ``[prompt, hook, d_model]`` on the CPU, in the order of ``hook_names``.
    """
    names = list(hook_names or residual_hook_names(model.cfg.n_layers))
    stop = max(_block_of(n) for n in names) + 1
    stop_at = stop if 0 < stop < model.cfg.n_layers else None
    device = device or next(model.parameters()).device
    wanted = set(names)
    out = []
    for i in range(0, len(prompts), batch_size):
        ids, last = encode(tokenizer, prompts[i : i + batch_size])
        ids, last = ids.to(device), last.to(device)
        _, cache = model.run_with_cache(
            ids, names_filter=lambda n: n in wanted, stop_at_layer=stop_at
        )
        rows = torch.arange(ids.shape[0], device=device)
        out.append(torch.stack([cache[n][rows, last] for n in names], dim=1).float().cpu())
    if not out:
        return torch.empty(0, len(names), model.cfg.d_model)
    return torch.cat(out)
