"""The packed engine of the steering sweep: many last-token interventions in one forward.

Every coefficient, sign, noise kind and noise draw is a *variant* of the same prompt that differs
only at the last token after the intervention block. :func:`variant_readout` runs all variants
of a prompt in one sequence: the prompt's tokens once, then one copy of its last token per
variant, each copy at the last token's position and (by a 4-D attention mask) attending to the
prompt and to itself only. Activations below the block and the prompt's keys and values are
computed once for every variant: exact (tested against one forward per variant) and about as
cheap as one forward of the prompt. The interventions are :mod:`poser_lens.hooks` objects
(:class:`~poser_lens.hooks.AddAt` adds the deltas, :class:`~poser_lens.hooks.Record` keeps the
last block's residuals), attached by :func:`~poser_lens.hooks.applied`. Each variant's answer
distribution is read as P(misaligned), P(A)+P(B) and the four outcome log-probabilities
(:mod:`~poser_lens.strategies.steering.outcomes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from poser_lens.data.schema import Scenario
from poser_lens.hooks import AddAt, Record, applied, hook_name
from poser_lens.readout import AnswerIds, answer_readout, encode, last_logits
from poser_lens.strategies.common import model_device
from poser_lens.strategies.steering.outcomes import outcome_log_probs


class VariantReadout(NamedTuple):
    """The answer readout of every variant of every prompt at one layer (float32, CPU).

    Attributes:
        p_misaligned: P(misaligned letter), ``[prompt, variant]``.
        mass_ab: P(A) + P(B), ``[prompt, variant]``.
        log_outcomes: Log-probabilities of the four
            :data:`~poser_lens.strategies.steering.outcomes.OUTCOMES` (aligned letter,
            misaligned letter, error token, every other token), ``[prompt, variant, 4]``;
            ``logsumexp`` over the last axis is 0.
    """

    p_misaligned: Float[Tensor, "prompt variant"]
    mass_ab: Float[Tensor, "prompt variant"]
    log_outcomes: Float[Tensor, "prompt variant 4"]


class _Copies(NamedTuple):
    """The patched copies of each prompt's last token, in packing order.

    Attributes:
        layer: The block after which each copy's delta is added, ``[copy]``.
        delta: Each copy's delta, ``[copy, d_model]``.
    """

    layer: Int[Tensor, " copy"]
    delta: Float[Tensor, "copy d_model"]


@torch.no_grad()
def variant_readout(
    model: Any,
    tokenizer: Any,
    scenarios: Sequence[Scenario],
    deltas: Mapping[int, Float[Tensor, "variant d_model"]],
    *,
    packed: bool = True,
    batch_size: int = 32,
) -> dict[int, VariantReadout]:
    """The answer readout when ``deltas[L][v]`` is added at the last token after block L.

    Args:
        model: A hooked model.
        tokenizer: Its tokenizer.
        scenarios: Prompts (their ``response`` is the aligned letter).
        deltas: Block index -> one vector per variant, added to ``blocks.L.hook_resid_post``.
        packed: Run every variant of every layer of a prompt in one sequence (see the module
            docstring; after the last block only the final norm and unembedding are rerun).
            ``False`` stacks the variants in the batch (one full forward per variant), for
            models that ignore 4-D attention masks or ``position_ids``.
        batch_size: Prompts per forward.

    Returns:
        Block index -> :class:`VariantReadout` ``(p_misaligned, mass_ab, log_outcomes)``, each
        ``[prompt, variant]`` (``log_outcomes``: ``[prompt, variant, 4]``; float32, CPU).

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["<<prompt>> x y <</prompt>> A B error"])
        >>> cfg = TinyConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=16)
        >>> model = wrap(build_native(cfg, len(tok)), tok)
        >>> s = [Scenario(prompt="<<prompt>> x y <</prompt>>", response="A")]
        >>> out = variant_readout(model, tok, s, {0: torch.randn(3, 8), 1: torch.randn(2, 8)})
        >>> tuple(out[0].p_misaligned.shape), tuple(out[1].log_outcomes.shape)
        ((1, 3), (1, 2, 4))
    """
    device, ids_of = model_device(model), AnswerIds.from_tokenizer(tokenizer)
    n_ctx, end = int(model.cfg.n_ctx), int(model.cfg.n_layers) - 1
    # Packed: every (layer, variant) below the last block is one copy of the last token; one
    # more copy, patched nowhere, comes last: the clean copy, whose last-block residual serves
    # the variants after the last block.
    layers = [L for L in sorted(deltas) if not (packed and end == L)]
    copies = _Copies(
        torch.tensor([L for L in layers for _ in deltas[L]], dtype=torch.long, device=device),
        torch.cat([deltas[L].float() for L in layers]).to(device)
        if layers
        else torch.zeros(0, int(model.cfg.d_model), device=device),
    )
    n_copy = len(copies.layer) + 1
    order = sorted(range(len(scenarios)), key=lambda i: len(scenarios[i].prompt))
    logits_of: dict[int, list[Tensor]] = {L: [] for L in deltas}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, last = encode(tokenizer, [scenarios[i].prompt for i in rows])
        ids, last = ids[:, : int(last.max()) + 1].to(device), last.to(device)
        if not packed:
            for L in deltas:
                logits_of[L].append(_stacked(model, ids, last, L, deltas[L].to(device)))
            continue
        width = max(1, n_ctx - int(last.max()))
        chunks, clean = [], None
        for c0 in range(0, n_copy, width):
            logits, resid = _packed(model, ids, last, copies, c0, min(c0 + width, n_copy))
            chunks.append(logits)
            clean = resid if clean is None else torch.cat([clean, resid], 1)
        logits = torch.cat(chunks, 1)
        for L in layers:
            logits_of[L].append(logits[:, :-1][:, copies.layer == L])
        if end in deltas:  # after the last block: final norm and unembedding only
            assert clean is not None  # n_copy >= 1: at least one chunk
            resid = clean[:, -1:] + deltas[end].to(device, clean.dtype)[None]
            logits_of[end].append(model.unembed(model.ln_final(resid)))
    inverse = torch.argsort(torch.tensor(order))
    out = {}
    for L, parts in logits_of.items():
        logits = torch.cat(parts)[inverse]
        aligned = [s.aligned_letter for s in scenarios for _ in range(logits.shape[1])]
        flat = logits.reshape(-1, logits.shape[-1])
        r = answer_readout(flat, ids_of, aligned)
        assert r.p_misaligned is not None  # aligned letters given
        out[L] = VariantReadout(
            r.p_misaligned.view(logits.shape[:2]).cpu(),
            r.mass_ab.view(logits.shape[:2]).cpu(),
            outcome_log_probs(flat, ids_of, aligned).view(*logits.shape[:2], 4).cpu(),
        )
    return out


class _PackedLayout(NamedTuple):
    """Where a batch's prompt tokens and the copies of each row's last token sit when packed.

    A *slot* is an index into the packed sequence. Row ``i`` keeps its prompt tokens
    ``0 .. last[i] - 1`` in the slots of the same index; copy ``c`` of its last token fills
    slot ``last[i] + c`` (copy 0 is the last token itself). Slots after a shorter row's last
    copy are *filler* (the last token again, never read).

    Attributes:
        token_at: Which prompt token fills each slot, ``[batch, slot]``; it is also the slot's
            position id, so every copy has the last token's id and position.
        blocked: The 4-D attention mask, ``[batch, 1, slot, slot]``: True where the query slot
            may not attend to the key slot, causal part included (HF models take a 4-D mask as
            it is, without adding their causal mask). A copy or filler slot attends to the
            prompt before its row's last token and to itself only.
        copy_at: The slot of each copy, ``[batch, copy]``.
    """

    token_at: Int[Tensor, "batch slot"]
    blocked: Bool[Tensor, "batch 1 slot slot"]
    copy_at: Int[Tensor, "batch copy"]


def _packed_layout(last: Int[Tensor, " batch"], n_copy: int) -> _PackedLayout:
    """The packed layout of rows whose last tokens are at ``last``, with ``n_copy`` copies each.

    Example:
        Row 0 is ``BOS x y`` (``last`` 2), row 1 ``BOS x`` (``last`` 1), two copies each. The
        packed rows are ``BOS x y y`` (slots 2, 3: copies 0, 1 of ``y``, both at position 2)
        and ``BOS x x x`` (slots 1, 2: copies of ``x`` at position 1; slot 3 is filler):

        >>> layout = _packed_layout(torch.tensor([2, 1]), n_copy=2)
        >>> layout.token_at.tolist(), layout.copy_at.tolist()
        ([[0, 1, 2, 2], [0, 1, 1, 1]], [[2, 3], [1, 2]])

        Row 1's mask (query slot x key slot, 1 = blocked): causal, and each copy sees ``BOS``
        and itself, so it computes exactly what ``x`` computes in ``BOS x`` alone:

        >>> layout.blocked[1, 0].int().tolist()
        [[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0]]
    """
    n_slots = int(last.max()) + n_copy
    slot = torch.arange(n_slots, device=last.device)
    first_copy = last[:, None]  # [batch, 1]: copy 0 replaces the last token in its own slot
    token_at = torch.minimum(slot[None], first_copy)  # prompt tokens, then the last one again
    query, key, first = slot[None, :, None], slot[None, None, :], last[:, None, None]
    # Causal; from a row's first copy on, slots see the prompt before it and themselves only.
    blocked = ((key > query) | ((query >= first) & (key >= first) & (query != key)))[:, None]
    copy_at = first_copy + torch.arange(n_copy, device=last.device)
    return _PackedLayout(token_at, blocked, copy_at)


def _at_slots(x: Tensor, slots: Int[Tensor, "batch n"]) -> Tensor:
    """``x[i, slots[i, n]]`` for every row ``i``: ``[batch, n, d]`` from ``[batch, slot, d]``."""
    return x.gather(1, slots[..., None].expand(-1, -1, x.shape[-1]))


def _packed(
    model: Any, ids: Tensor, last: Tensor, copies: _Copies, c0: int, c1: int
) -> tuple[Tensor, Tensor]:
    """Logits ``[batch, copy, vocab]`` and last-block residuals of copies ``c0 .. c1 - 1``.

    One forward of the packed rows (:func:`_packed_layout`): copy ``c`` of row ``i`` sits at
    slot ``last[i] + c - c0`` with the last token's id and position and attends to the prompt
    and to itself only, so up to block ``copies.layer[c]`` it computes exactly the last token
    of the unpacked prompt; ``copies.delta[c]`` is then added to its
    ``blocks.L.hook_resid_post`` (:class:`~poser_lens.hooks.AddAt`), and the later blocks see
    the same keys and values as an unpacked run with that delta at the last token. Copies
    past the end of ``copies`` (the clean copy) are patched nowhere. The residuals are the
    last block's ``hook_resid_post`` at the copies (:class:`~poser_lens.hooks.Record`),
    ``[batch, copy, d_model]``.

    ``tests/strategies/test_s2_noise.py::test_packed_equals_one_forward_per_variant`` checks
    that every copy's readout equals one unpadded forward per (prompt, variant).
    """
    n_layers = int(model.cfg.n_layers)
    layout = _packed_layout(last, c1 - c0)
    layer, delta = copies.layer[c0:c1], copies.delta[c0:c1]
    hooks: list[tuple[str, Any]] = []
    for L in layer.unique().tolist():  # each block's copies get their deltas in their slots
        here = (layer == L).nonzero()[:, 0]
        hooks.append(
            (hook_name("resid_post", L, n_layers), AddAt(delta[here], layout.copy_at[:, here]))
        )
    store: dict[str, Tensor] = {}
    final = hook_name("resid_post", n_layers - 1, n_layers)
    hooks.append((final, Record(store, key="final", to_cpu=False)))
    # An additive float mask: read alike by the native tiny model and by HF models (which
    # would take a boolean 4-D mask as "may attend").
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    mask = torch.zeros(layout.blocked.shape, dtype=dtype, device=ids.device)
    mask = mask.masked_fill(layout.blocked, torch.finfo(dtype).min)
    with applied(model, hooks):
        logits = model(
            ids.gather(1, layout.token_at), attention_mask=mask, position_ids=layout.token_at
        )
    return _at_slots(logits, layout.copy_at), _at_slots(store["final"], layout.copy_at)


def _stacked(model: Any, ids: Tensor, last: Tensor, layer: int, d: Tensor) -> Tensor:
    """Logits ``[batch, variant, vocab]``: one full forward per variant, stacked in the batch."""
    n_var, b = len(d), len(ids)
    last_r = last.repeat_interleave(n_var)
    add = AddAt(d.repeat(b, 1)[:, None], last_r[:, None])  # each row's own delta, last token
    hooks = [(hook_name("resid_post", layer, int(model.cfg.n_layers)), add)]
    logits = last_logits(model, ids.repeat_interleave(n_var, 0), last_r, hooks=hooks)
    return logits.view(b, n_var, -1)
