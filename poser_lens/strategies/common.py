"""Pieces several strategies share: the answer readout of scenarios, contrast directions.

Example:
    ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

    >>> from poser_lens.data.schema import Scenario
    >>> s = [Scenario(prompt="<<prompt>> x <</prompt>>", response="A"),
    ...      Scenario(prompt="<<prompt>> x y y <</prompt>>", response="B")]
    >>> r = answer_readout_batched(lm, tok, s)
    >>> tuple(r.p_misaligned.shape)
    (2,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from poser_lens.activations import collect
from poser_lens.data.prompts import contrast_pairs, critical_indices
from poser_lens.data.schema import Scenario
from poser_lens.hooked import HookedModel
from poser_lens.hooks import LayerSpec, hook_name, resolve_layer
from poser_lens.probes import DirectionFinder, mass_mean
from poser_lens.readout import (
    AnswerIds,
    Readout,
    answer_readout,
    encode,
    last_token_logits,
)
from poser_lens.strategies.base import ModelContext
from poser_lens.strategies.memo import CriticalForwards, LastResiduals

#: Texts per forward of :func:`last_residuals` and :func:`contrast_residuals` (the cost model
#: reads it too).
RESIDUAL_BATCH = 32


def model_device(model: HookedModel | torch.nn.Module) -> torch.device:
    """Device of a model's parameters."""
    return next(model.parameters()).device


def answer_readout_batched(
    model: HookedModel, tokenizer: Any, scenarios: Sequence[Scenario], **options: Any
) -> Readout:
    """P(A), P(B), P(error), P(A)+P(B) and P(misaligned) of scenarios, optionally under hooks.

    The aligned letter of each scenario is its ``response`` (as in benchmark files);
    ``options`` (``hooks``, ``batch_size``) go to :func:`poser_lens.readout.last_token_logits`.
    """
    prompts = [s.prompt for s in scenarios]
    logits = last_token_logits(model, tokenizer, prompts, **options)
    ids = AnswerIds.from_tokenizer(tokenizer)
    return answer_readout(logits, ids, aligned=[s.aligned_letter for s in scenarios])


def contrast_residuals(
    model: HookedModel,
    tokenizer: Any,
    scenarios: Sequence[Scenario],
    blocks: Sequence[int],
    *,
    n_pairs: int = 15,
) -> tuple[
    Float[Tensor, "pair block d_model"], Float[Tensor, "pair block d_model"], list[Scenario]
]:
    """Last-token residuals of the contrast pairs at several blocks, and the evaluation set.

    Contrast pairs are the first ``n_pairs`` scenarios with a critical fact: the prompt with
    all facts (on valid prompts the critical fact asserts good oversight) against the same
    prompt without its critical facts (:func:`poser_lens.data.prompts.contrast_pairs`, with
    Poser's list bugs fixed and no A/B swap, so the direction is not confounded with the
    answer letter). Each side runs once for every block (``blocks.L.hook_resid_post`` of each
    of ``blocks``, :func:`poser_lens.activations.collect`, which stops after the deepest one);
    every other scenario is returned for evaluation.

    Returns:
        ``(critical, clean, rest)``: ``[pair, block, d_model]`` each, blocks in the order given.

    Raises:
        ValueError: Without a scenario with a critical fact, or with none left to evaluate.
    """
    pairs, rest = contrast_pairs(scenarios, n_pairs)
    if not pairs:
        raise ValueError("no scenario with a critical fact to build contrast pairs from")
    if not rest:
        raise ValueError(
            f"{len(scenarios)} valid prompts: all used for the {len(pairs)} contrast pairs, none "
            "left to evaluate (lower n_pairs)"
        )
    n_layers = int(model.cfg.n_layers)
    names = [hook_name("resid_post", block, n_layers) for block in blocks]
    crit = collect(
        model, tokenizer, [p.critical.prompt for p in pairs], names, batch_size=RESIDUAL_BATCH
    )
    clean = collect(
        model, tokenizer, [p.clean.prompt for p in pairs], names, batch_size=RESIDUAL_BATCH
    )
    return crit, clean, rest


def contrast_direction(
    model: HookedModel,
    tokenizer: Any,
    scenarios: Sequence[Scenario],
    layer: LayerSpec,
    *,
    n_pairs: int = 15,
    finder: DirectionFinder | None = None,
) -> tuple[Float[Tensor, " d_model"], list[Scenario]]:
    """The "oversight" direction at a layer from contrast pairs, and the evaluation set.

    The direction is ``finder(critical, clean)`` of ``blocks.L.hook_resid_post`` at the last
    token of the contrast pairs (:func:`contrast_residuals`; default finder: difference of
    means), so it points towards "oversight is good"; every other scenario is returned for
    evaluation.
    """
    block = resolve_layer(int(model.cfg.n_layers), layer)
    crit, clean, rest = contrast_residuals(model, tokenizer, scenarios, [block], n_pairs=n_pairs)
    return (finder or mass_mean())(crit[:, 0], clean[:, 0]), rest


def prompt_positions(prompts: Sequence[Any], subset: Sequence[Any]) -> list[int]:
    """Indices into ``prompts`` of the items of ``subset``, an in-order selection of them.

    Matched by identity (the helpers that select evaluation prompts return the context's own
    objects), so these are the valid-prompt indices a per-prompt score stores under
    :data:`~poser_lens.strategies.base.PROMPT_INDEX`.

    Raises:
        ValueError: If ``subset`` is not an in-order selection of ``prompts``.

    Example:
        >>> a, b, c = object(), object(), object()
        >>> prompt_positions([a, b, c], [a, c])
        [0, 2]
    """
    out, j = [], 0
    for item in subset:
        while j < len(prompts) and prompts[j] is not item:
            j += 1
        if j == len(prompts):
            raise ValueError("subset is not an in-order selection of the prompts")
        out.append(j)
        j += 1
    return out


def kept_mean(rows: Sequence[Any], positions: Sequence[int], shape: tuple[int, ...] = ()) -> Any:
    """Mean over the rows at ``positions`` (float64; ``None`` counts as NaN).

    With no position kept the result is NaN, of the rows' shape (or ``shape`` when there are
    no rows at all), so a restricted score's statistic comes out NaN (a tie).

    Example:
        >>> kept_mean([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [0, 2]).tolist()
        [3.0, 4.0]
        >>> kept_mean([[1.0, 2.0]], []).tolist()
        [nan, nan]
    """
    arr = np.asarray(rows, dtype=float)
    if len(positions) == 0:
        return np.full(arr.shape[1:] if arr.ndim > 1 else shape, np.nan)
    return arr[list(positions)].mean(0)


def layer_grid(n_layers: int, fractions: Sequence[float]) -> list[int]:
    """Distinct block indices of fractions of depth, in order.

    Example:
        >>> layer_grid(2, [0.125, 0.25, 0.375, 0.5])
        [0, 1]
    """
    return sorted({resolve_layer(n_layers, f) for f in fractions})


def last_residuals(ctx: ModelContext, texts: Sequence[str]) -> Float[Tensor, "n hook d"]:
    """Last-token residual stream of texts (embedding + every block), memoised on ``ctx``.

    Index 0 is the embedding, ``i`` the ``resid_post`` of block ``i - 1`` (as
    :func:`poser_lens.activations.collect`). Strategies reading the same prompts share one
    forward pass through ``ctx.memo``.

    Example:
        ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

        >>> ctx = ModelContext("saint-0", lm, tok, "f", [])
        >>> tuple(last_residuals(ctx, ["x y", "x"]).shape)
        (2, 2, 8)
    """
    rows: dict[str, Tensor] = ctx.cached(LastResiduals(), dict)
    missing = list(dict.fromkeys(t for t in texts if t not in rows))
    if missing:
        got = collect(ctx.model, ctx.tokenizer, missing, batch_size=RESIDUAL_BATCH)
        rows.update(zip(missing, got, strict=True))
    if not texts:
        return torch.empty(0, ctx.n_layers + 1, int(ctx.model.cfg.d_model))
    return torch.stack([rows[t] for t in texts])


def logits_from_final_residual(
    model: HookedModel, final_resid: Float[Tensor, "n d_model"]
) -> Float[Tensor, "n vocab"]:
    """Next-token logits from the last block's ``hook_resid_post`` at the last token.

    The final norm and the unembedding are all that follow the last block, so this equals the
    last-token logits of a full forward pass without running one (float32, on the CPU).
    """
    param = next(model.parameters())
    # The final norm and the unembedding are submodules, not HookedModel members (see
    # poser_lens.hooked): read untyped.
    parts: Any = model
    with torch.no_grad():
        x = final_resid.to(param.device, param.dtype)[:, None]
        return parts.unembed(parts.ln_final(x))[:, 0].float().cpu()


def readout_from_residuals(ctx: ModelContext, scenarios: Sequence[Scenario]) -> Readout:
    """The answer readout of scenarios from their memoised final residuals (no extra forward).

    The last block's residual at the last token, through the final norm and the
    unembedding, gives the same logits as a full forward pass; strategies that already read
    the residuals (S4, S5, S6, patching) thus share one forward with the baselines.

    Example:
        ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

        >>> from poser_lens.data.schema import Scenario
        >>> s = Scenario(prompt="<<prompt>> x y <</prompt>>", response="A")
        >>> ctx = ModelContext("saint-0", lm, tok, "f", [s])
        >>> full = answer_readout_batched(lm, tok, [s]).p_misaligned
        >>> bool(torch.allclose(readout_from_residuals(ctx, [s]).p_misaligned, full, atol=1e-5))
        True
    """
    final = last_residuals(ctx, [s.prompt for s in scenarios])[:, -1]
    logits = logits_from_final_residual(ctx.model, final)
    ids = AnswerIds.from_tokenizer(ctx.tokenizer)
    return answer_readout(logits, ids, aligned=[s.aligned_letter for s in scenarios])


class CriticalBatch(NamedTuple):
    """A batch of the prompts with a critical fact, after one plain forward of it.

    Attributes:
        ids: Right-padded token ids.
        last: Each row's last real index.
        patterns: Per block, the attention pattern from each row's last token, ``[batch, head,
            pos]`` (float32, CPU).
        logits: Each row's last-token logits, ``[batch, vocab]`` (float32, CPU).
    """

    ids: Int[Tensor, "batch pos"]
    last: Int[Tensor, " batch"]
    patterns: list[Float[Tensor, "batch head pos"]]
    logits: Float[Tensor, "batch vocab"]


@torch.no_grad()
def last_token_attention(
    model: HookedModel, ids: Int[Tensor, "batch pos"], last: Int[Tensor, " batch"]
) -> tuple[list[Float[Tensor, "batch head pos"]], Float[Tensor, "batch vocab"]]:
    """Attention from each row's own last token per block, and the last-token logits.

    One full forward whose pattern hooks keep only each row's last query (float32, CPU): the
    ``[pos, pos]`` patterns of the whole batch are never held, so the forward needs no more
    memory than a plain one. The hooks return the patterns unchanged and the logits are the
    forward's own, so they equal a plain forward's read at the last tokens
    (:func:`poser_lens.readout.last_logits`).

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> patterns, logits = last_token_attention(model, torch.tensor([[1, 2, 3]]),
        ...                                         torch.tensor([2]))
        >>> len(patterns), tuple(patterns[0].shape), tuple(logits.shape)
        (2, (1, 2, 3), (1, 10))
    """
    n_layers = int(model.cfg.n_layers)
    names = [hook_name("pattern", layer, n_layers) for layer in range(n_layers)]
    rows = torch.arange(ids.shape[0], device=ids.device)
    last = last.to(ids.device)
    got: dict[str, Tensor] = {}

    def keep_last(pattern: Tensor, hook: Any) -> Tensor:
        got[hook.name] = pattern[rows, :, last].float().cpu()
        return pattern

    logits = model.run_with_hooks(ids, fwd_hooks=[(n, keep_last) for n in names])
    return [got[n] for n in names], logits[rows, last].float().cpu()


def critical_prompts(ctx: ModelContext, n_prompts: int) -> tuple[list[int], list[Scenario]]:
    """The first ``n_prompts`` of the model's prompts with a critical fact, and their indices.

    In stored order (:func:`poser_lens.data.prompts.critical_indices`): the prompts that have a
    counterfactual, which S6 and the patching detector read (the indices are their scores'
    ``prompt_index``).

    Example:
        >>> s = [Scenario(prompt="p", response="A"), Scenario(prompt="q", response="B")]
        >>> critical_prompts(ModelContext("saint-0", None, None, "f", s), 10)
        ([], [])
    """
    index = critical_indices(ctx.prompts, n_prompts)
    return index, [ctx.prompts[i] for i in index]


def critical_forwards(ctx: ModelContext, n_prompts: int, batch_size: int) -> list[CriticalBatch]:
    """One plain forward of the first ``n_prompts`` prompts with a critical fact, memoised.

    The prompts (:func:`critical_prompts`) run in stored order,
    ``batch_size`` at a time (:func:`last_token_attention`). S6's attention reads the
    patterns and the patching detector's clean readout the logits, so with the same
    ``n_prompts`` and ``batch_size`` (their defaults) the two share one forward per batch:
    exactly the forward each ran alone (the same batches, a forward with no hook that changes
    anything). S6's saliency runs the same batches but keeps its own forward: its backward
    needs that forward's autograd graph, which a memo cannot hold (every activation of a
    batch), and making the plain forward carry the graph and the backward would cost S6's
    attention and the patching detector a backward whenever they run without the saliency.

    Example:
        ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

        >>> ctx = ModelContext("saint-0", lm, tok, "f", [])
        >>> critical_forwards(ctx, 50, 64)
        []
    """

    def run() -> list[CriticalBatch]:
        _, prompts = critical_prompts(ctx, n_prompts)
        device = model_device(ctx.model)
        out = []
        for i in range(0, len(prompts), batch_size):
            ids, last = encode(ctx.tokenizer, [s.prompt for s in prompts[i : i + batch_size]])
            ids, last = ids.to(device), last.to(device)
            out.append(CriticalBatch(ids, last, *last_token_attention(ctx.model, ids, last)))
        return out

    return list(ctx.cached(CriticalForwards(n_prompts, batch_size), run))
