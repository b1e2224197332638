"""Activation patching, attention onto token spans, and gradient saliency.

Patching runs the *clean* prompt with one activation (a layer's residual stream or output at
one position, or one attention head) taken from a *corrupt* run of a token-aligned prompt, and
records a metric of the logits. Grids are tensors indexed by absolute layer, head and
position (``NaN`` where a cell was not computed); :func:`grid_frame` turns one into a long
pandas DataFrame.

Example:
    >>> grid = torch.tensor([[0.5, 1.0], [2.0, float("nan")]])  # e.g. patch_grid's [layer, pos]
    >>> grid_frame(grid, "resid_pre")[["layer", "position", "value"]].values.tolist()
    [[0.0, 0.0, 0.5], [0.0, 1.0, 1.0], [1.0, 0.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from poser_lens.activations import stop_layer
from poser_lens.hooked import HookedModel
from poser_lens.hooks import LayerSpec, Patch, applied, hook_name, position_mask, resolve_layer

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, ""]]


def _layers(model: HookedModel, layers: Sequence[LayerSpec] | None) -> list[int]:
    n_layers = model.cfg.n_layers
    if layers is None:
        return list(range(n_layers))
    return sorted({resolve_layer(n_layers, layer) for layer in layers})


def _positions(positions: Sequence[int] | None, pos: int) -> list[int]:
    if positions is None:
        return list(range(pos))
    out = []
    for p in positions:
        if not -pos <= int(p) < pos:
            raise ValueError(f"position {p} is outside a sequence of {pos} tokens")
        out.append(int(p) % pos)
    return sorted(set(out))


def _corrupt_cache(
    model: HookedModel, clean: Tensor, corrupt: Tensor, names: Sequence[str]
) -> dict[str, Tensor]:
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} differ")
    wanted = set(names)
    with torch.no_grad():
        _, cache = model.run_with_cache(
            corrupt,
            names_filter=lambda n: n in wanted,
            stop_at_layer=stop_layer(names, model.cfg.n_layers),
        )
    return {n: cache[n] for n in names}


def _patched(model: HookedModel, clean: Tensor, metric: Metric, name: str, patch: Patch) -> float:
    with torch.no_grad(), applied(model, [(name, patch)]):
        return float(metric(model(clean)))


def patch_grid(
    model: HookedModel,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    kind: str = "resid_pre",
    positions: Sequence[int] | None = None,
    layers: Sequence[LayerSpec] | None = None,
) -> Float[Tensor, "layer pos"]:
    """Metric of the clean run with one (layer, position) taken from the corrupt run.

    Both inputs must have the same shape (token-aligned prompts). Entry ``[L, p]`` is the
    metric when the ``kind`` activation of block ``L`` at position ``p`` is patched in, in
    every row of the batch at once (one forward pass of the whole batch per cell).

    Args:
        model: A hooked model.
        clean: Tokens of the run that is patched.
        corrupt: Tokens of the run activations come from.
        metric: Logits -> scalar (e.g. a logit difference at the last token).
        kind: Hook kind (see :data:`poser_lens.hooks.BLOCK_HOOKS`), e.g. ``resid_pre``,
            ``resid_post``, ``attn_out``, ``mlp_out`` (``z`` patches all heads together).
        positions: Only patch these positions (negative counts from the end); the other
            columns are ``NaN``. Default: every position.
        layers: Only patch these layers (ints or fractions of depth); the other rows are
            ``NaN``. Default: every layer.

    Returns:
        ``[n_layers, pos]``.

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> clean, corrupt = torch.tensor([[1, 2, 3]]), torch.tensor([[1, 5, 3]])
        >>> grid = patch_grid(model, clean, corrupt, lambda lg: lg[0, -1, 3], kind="mlp_out",
        ...                   positions=[-1], layers=[1])
        >>> grid.isnan().int().tolist()
        [[1, 1, 1], [1, 1, 0]]
    """
    if kind == "pattern":
        raise ValueError("patch_grid patches activations indexed by position, not 'pattern'")
    n_layers = model.cfg.n_layers
    rows = _layers(model, layers)
    batch, pos = clean.shape
    cols = _positions(positions, pos)
    names = {layer: hook_name(kind, layer, n_layers) for layer in rows}
    cache = _corrupt_cache(model, clean, corrupt, list(names.values()))
    out = torch.full((n_layers, pos), float("nan"))
    for layer, name in names.items():
        for p in cols:
            patch = Patch(cache[name], positions=position_mask([p], batch, pos))
            out[layer, p] = _patched(model, clean, metric, name, patch)
    return out


def patch_head_grid(
    model: HookedModel,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    per_position: bool = False,
    positions: Sequence[int] | None = None,
    layers: Sequence[LayerSpec] | None = None,
) -> Float[Tensor, "layer head *pos"]:
    """Metric of the clean run with one attention head's output taken from the corrupt run.

    A head is patched at ``blocks.L.attn.hook_z`` (its attention-weighted values, before the
    output projection), so only that head changes.

    Args:
        model: A hooked model.
        clean: Tokens of the run that is patched.
        corrupt: Tokens of the run activations come from (same shape).
        metric: Logits -> scalar.
        per_position: Patch each (layer, head, position) alone and return
            ``[layer, head, pos]``; otherwise patch each head at all selected positions
            together and return ``[layer, head]``.
        positions: Positions to patch (negative counts from the end); default all. With
            ``per_position``, the other positions are ``NaN``.
        layers: Only patch these layers (ints or fractions of depth); other rows are ``NaN``.

    Returns:
        ``[n_layers, n_heads]``, or ``[n_layers, n_heads, pos]`` with ``per_position``.

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> clean, corrupt = torch.tensor([[1, 2, 3]]), torch.tensor([[1, 5, 3]])
        >>> def metric(logits):
        ...     return logits[0, -1, 3]
        >>> patch_head_grid(model, clean, corrupt, metric).shape
        torch.Size([2, 2])
        >>> patch_head_grid(model, clean, corrupt, metric, per_position=True, positions=[2]).shape
        torch.Size([2, 2, 3])
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rows = _layers(model, layers)
    batch, pos = clean.shape
    cols = _positions(positions, pos)
    names = {layer: hook_name("z", layer, n_layers) for layer in rows}
    cache = _corrupt_cache(model, clean, corrupt, list(names.values()))
    cells: list[tuple[list[int], tuple[int, ...]]]
    if per_position:
        cells = [([p], (p,)) for p in cols]
        out = torch.full((n_layers, n_heads, pos), float("nan"))
    else:
        cells = [(cols, ())]
        out = torch.full((n_layers, n_heads), float("nan"))
    for layer, name in names.items():
        for head in range(n_heads):
            for selected, index in cells:
                mask = position_mask(selected, batch, pos)
                patch = Patch(cache[name], positions=mask, heads=[head])
                cell = (layer, head, *index)  # not out[(...)]: mypy reads that as 3.11 syntax
                out[cell] = _patched(model, clean, metric, name, patch)
    return out


def grid_frame(
    grid: Float[Tensor, "..."],
    kind: str,
    dims: Sequence[str] = ("layer", "position"),
):  # -> pandas.DataFrame
    """A patching grid as a long pandas DataFrame: one row per computed cell.

    Args:
        grid: A tensor from :func:`patch_grid` or :func:`patch_head_grid`.
        kind: What was patched (``resid_pre``, ``z``, ...), stored in a ``kind`` column.
        dims: Names of the grid's dimensions, e.g. ``("layer", "position")`` (the default,
            for :func:`patch_grid`), ``("layer", "head")`` or
            ``("layer", "head", "position")``.

    Returns:
        Columns ``*dims, kind, value``; ``NaN`` (not computed) cells are left out.

    Example:
        >>> grid_frame(torch.tensor([[0.5, float("nan")]]), "mlp_out").to_dict("records")
        [{'layer': 0, 'position': 0, 'kind': 'mlp_out', 'value': 0.5}]
    """
    import pandas as pd

    if len(dims) != grid.dim():
        raise ValueError(f"{len(dims)} dimension names for a {grid.dim()}-D grid")
    values = grid.detach().float().cpu()
    keep = ~values.isnan()
    index = keep.nonzero()
    frame = pd.DataFrame(index.numpy(), columns=list(dims))
    frame["kind"] = kind
    frame["value"] = values[keep].numpy()
    return frame


def attention_to_span(
    model: HookedModel,
    tokens: Int[Tensor, "batch pos"],
    span: Bool[Tensor, "batch pos"],
    last: Int[Tensor, " batch"] | None = None,
) -> Float[Tensor, "batch layer head"]:
    """Attention from the last position onto the tokens of a span, per layer and head.

    ``span`` marks the key positions (e.g. the tokens of the critical fact, from
    :func:`poser_lens.hooks.span_mask`); the result is the summed attention weight on them (a
    fraction in [0, 1]). The query is each row's ``last`` real token (right padding, as
    :func:`poser_lens.readout.encode` returns), or the final position when ``last``
    is None (unpadded rows).

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> everything = torch.ones(1, 3, dtype=torch.bool)
        >>> attention_to_span(model, torch.tensor([[1, 2, 3]]), everything).round(decimals=4)
        tensor([[[1., 1.],
                 [1., 1.]]])
    """
    n_layers = model.cfg.n_layers
    names = [hook_name("pattern", layer, n_layers) for layer in range(n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    key = span.to(torch.float32)[:, None, :]  # [batch, 1, pos]
    rows = torch.arange(tokens.shape[0])
    query = last.cpu() if last is not None else torch.full_like(rows, tokens.shape[1] - 1)
    per_layer = [(cache[n].float().cpu()[rows, :, query] * key).sum(-1) for n in names]
    return torch.stack(per_layer, dim=1)


def gradient_saliency(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], metric: Metric
) -> Float[Tensor, "batch pos"]:
    """Norm of the metric's gradient with respect to each token's embedding (Poser Fig 9).

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> saliency = gradient_saliency(model, torch.tensor([[1, 2, 3]]), lambda lg: lg[0, 0, 3])
        >>> saliency[0, 1:].tolist()  # the first position's logits ignore later tokens
        [0.0, 0.0]
    """
    store: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> Tensor:
        leaf = act.detach().requires_grad_(True)
        store["embed"] = leaf
        return leaf

    with torch.enable_grad(), applied(model, [("hook_embed", grab)]):  # even under no_grad
        value = metric(model(tokens))
        (grad,) = torch.autograd.grad(value, store["embed"])
    return grad.norm(dim=-1).detach().cpu()
