"""Batched activation collection at chosen hook points and positions.

Prompts of unequal length are right padded and each row is read at its own last real token
(or at any positions a mask selects). In a causal model real tokens never attend to padding on
their right, so no attention mask is needed and batched results equal one-at-a-time ones (a
test checks this). The forward stops as soon as the last wanted hook point has been read: no
block after it runs, and reading the last block's residual runs neither the final norm nor the
unembedding of every position. Results move to the CPU batch by batch.

Example:
    >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> prompts = ["a b c", "a"]
    >>> tok = build_tokenizer(prompts)
    >>> cfg = TinyConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
    >>> model = wrap(build_native(cfg, d_vocab=len(tok)), tok)
    >>> acts = collect(model, tok, prompts)  # [prompt, n_layers + 1, d_model]
    >>> tuple(acts.shape)  # acts[:, 0]: embedding; acts[:, L + 1]: blocks.L.hook_resid_post
    (2, 3, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from poser_lens.hooked import HookedModel
from poser_lens.hooks import hook_name
from poser_lens.readout import encode


def residual_hook_names(n_layers: int) -> list[str]:
    """The embedding (``blocks.0.hook_resid_pre``) and every block's ``hook_resid_post``.

    Index ``i`` matches Hugging Face ``hidden_states[i]`` for ``i < n_layers`` (the last HF
    state has the final norm applied; this one does not).

    Example:
        >>> residual_hook_names(2)
        ['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
    """
    posts = [hook_name("resid_post", i, n_layers) for i in range(n_layers)]
    return [hook_name("resid_pre", 0, n_layers), *posts]


_EMBEDDING_PREFIXES = ("hook_embed", "hook_pos_embed", "embed.", "pos_embed.")


def stop_layer(hook_names: Sequence[str], n_layers: int) -> int | None:
    """The ``stop_at_layer`` that still runs every named hook point (``None``: run all).

    Reading block ``L`` needs blocks ``0..L``, so the forward can stop before block ``L + 1``;
    embedding hooks need no block; anything after the blocks (``ln_final``, ``unembed``) needs
    the full model.

    Example:
        >>> stop_layer(["blocks.0.hook_resid_post", "blocks.2.attn.hook_z"], 6)
        3
        >>> stop_layer(["hook_embed"], 6), stop_layer(["ln_final.hook_normalized"], 6)
        (0, None)
    """

    def block_of(name: str) -> int:
        parts = name.split(".")
        if parts[0] == "blocks":
            return int(parts[1])
        return -1 if name.startswith(_EMBEDDING_PREFIXES) else n_layers

    stop = max((block_of(n) for n in hook_names), default=n_layers - 1) + 1
    return stop if stop < n_layers else None


def last_token_reads(
    model: HookedModel,
    ids: Int[Tensor, "batch pos"],
    last: Int[Tensor, " batch"],
    hook_names: Sequence[str],
    *,
    stop_at_layer: int | None = None,
) -> dict[str, Tensor]:
    """Each hook point's activation at each row's last token, from one forward that stops early.

    Every named hook records ``act[row, last[row]]`` as it fires; once the last of them has
    fired the forward is stopped (TransformerLens's own ``StopAtLayerException``, which the
    bridge's forward catches), so nothing after it runs: reading the last block's residual
    skips the final norm and the unembedding of every position, which a cached full forward
    would run. The activations read are those of a full forward (the same operations up to
    the point read). No gradient.

    Args:
        model: A hooked model (``TransformerBridge``).
        ids: Right-padded token ids, on the model's device.
        last: Each row's last real index, on the same device.
        hook_names: Hook points to read.
        stop_at_layer: Also stop before this block (:func:`stop_layer`; the stop at the last
            read makes it redundant, but it lets the bridge clean up as after a stopped run).

    Returns:
        Hook name -> ``[batch, ...]`` (the activation's trailing axes), on the model's device.

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> ids, last = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([2, 1])
        >>> name = "blocks.1.hook_resid_post"
        >>> read = last_token_reads(model, ids, last, [name])
        >>> _, cache = model.run_with_cache(ids, names_filter=name)
        >>> torch.equal(read[name], cache[name][[0, 1], [2, 1]])
        True
    """
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    wanted = list(dict.fromkeys(hook_names))
    rows = torch.arange(ids.shape[0], device=ids.device)
    got: dict[str, Tensor] = {}

    def reader(name: str) -> Callable[[Tensor, Any], Tensor]:
        def read(act: Tensor, hook: Any) -> Tensor:
            got[name] = act[rows, last]
            if len(got) == len(wanted):
                raise StopAtLayerException(act)  # everything is read: run nothing more
            return act

        return read

    with torch.no_grad():
        model.run_with_hooks(
            ids, fwd_hooks=[(n, reader(n)) for n in wanted], stop_at_layer=stop_at_layer
        )
    missing = [n for n in wanted if n not in got]
    if missing:
        raise ValueError(f"hook points never fired: {', '.join(missing)}")
    return got


def collect(
    model: HookedModel,
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

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["a b", "c"])
        >>> cfg = TinyConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
        >>> model = wrap(build_native(cfg, d_vocab=len(tok)), tok)
        >>> collect(model, tok, ["a b", "c"], ["blocks.0.hook_mlp_out"], batch_size=1).shape
        torch.Size([2, 1, 8])
    """
    names = list(hook_names or residual_hook_names(model.cfg.n_layers))
    stop_at = stop_layer(names, model.cfg.n_layers)
    device = device or next(model.parameters()).device
    # Similar lengths share a batch (less padding); rows go back to the caller's order below.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    ordered = [prompts[i] for i in order]
    out = []
    for i in range(0, len(ordered), batch_size):
        ids, last = encode(tokenizer, ordered[i : i + batch_size])
        ids, last = ids.to(device), last.to(device)
        read = last_token_reads(model, ids, last, names, stop_at_layer=stop_at)
        out.append(torch.stack([read[n] for n in names], dim=1).float().cpu())
    if not out:
        return torch.empty(0, len(names), model.cfg.d_model)
    acts = torch.cat(out)
    return acts[torch.argsort(torch.tensor(order))]
