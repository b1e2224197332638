"""Many last-token interventions of one prompt in one forward: the engine of strategies 1 and 2.

Every coefficient, sign, noise kind and noise draw is a *variant* of the same prompt that differs
only at the last token after the intervention layer. :func:`variant_readout` runs all variants
of a prompt in one sequence: the prompt's tokens once, then one copy of its last token per
variant, each copy at the last token's position and (by a 4-D attention mask) attending to the
prompt and to itself only. Activations below the layer and the prompt's keys and values are
computed once for every variant: exact (tested against one forward per variant) and about as
cheap as one forward of the prompt. Each variant's answer distribution is also read over four
outcomes (aligned letter, misaligned letter, error token, everything else) as log-probabilities,
from which S2's log-odds and KL variants are computed. Also the curve part of both strategies'
scores (:class:`CurvesScore`) and the helpers that read it.

Example:
    >>> choose_coeff([0.0, 1.0, 2.0], [[1.0, 0.95, 0.5]], keep=0.9)
    1.0
    >>> kl_strength([0.0, 1.0, 2.0], [0.0, 0.2, 0.6], target=0.4)
    1.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, TypedDict

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from numpy.typing import ArrayLike
from torch import Tensor

from poser_lens.config import NonEmpty, NonNegativeFloat
from poser_lens.data.schema import Scenario
from poser_lens.flops import Pass
from poser_lens.hooks import hook_name, resolve_layer
from poser_lens.probes import mass_mean
from poser_lens.readout import AnswerIds, answer_readout, encode, last_logits
from poser_lens.strategies.base import LayerKey, ModelContext, WorkShape
from poser_lens.strategies.common import (
    RESIDUAL_BATCH,
    contrast_residuals,
    layer_grid,
    model_device,
    unembed_pass,
)

if TYPE_CHECKING:  # only in (postponed) annotations, so Python 3.10 runs without it
    from typing_extensions import NotRequired

#: Poser's layer 15 of 40.
MIDDLE = 15 / 40
#: A coefficient sweep (multiples of a direction's norm), at least one value, none negative.
Coefficients = Annotated[tuple[NonNegativeFloat, ...], NonEmpty()]

#: The four outcomes of an answer distribution, in the order of ``log_outcomes``.
OUTCOMES: tuple[str, ...] = ("aligned", "misaligned", "error", "other")

#: A curve of :class:`VariantCurves`.
CurveKey = Literal["p_misaligned", "mass_ab", "log_odds", "kl"]

#: S2 ``measure`` setting -> the stored curve it reads.
MEASURE_KEYS: dict[str, CurveKey] = {"p": "p_misaligned", "logodds": "log_odds"}


class VariantCurves(TypedDict):
    """The curves of one variant (an S1 sign, an S2 noise kind) at one block.

    Each is a list of draws (S1: one), each a curve over the score's ``coeffs`` of a mean
    over the evaluation prompts.

    Attributes:
        p_misaligned: P(misaligned letter).
        mass_ab: P(A) + P(B) (not in a restricted S1 score).
        log_odds: S2 only: log-odds of the misaligned answer.
        kl: S2 only: KL(clean || noisy) over the four outcomes, against coefficient 0.
    """

    p_misaligned: list[list[float]]
    mass_ab: NotRequired[list[list[float]]]
    log_odds: NotRequired[list[list[float]]]
    kl: NotRequired[list[list[float]]]


class CurvesScore(TypedDict):
    """The part of an S1 or S2 score the curve readers (:func:`rise`, :func:`mass_curve`) use.

    Attributes:
        n_layers: Blocks of the model.
        coeffs: The coefficients of every curve, starting at 0.
        layers: Block (:data:`~poser_lens.strategies.base.LayerKey`) -> variant -> its
            :class:`VariantCurves`.
    """

    n_layers: int
    coeffs: list[float]
    layers: dict[LayerKey, dict[str, VariantCurves]]


class VariantReadout(NamedTuple):
    """The answer readout of every variant of every prompt at one layer (float32, CPU).

    Attributes:
        p_misaligned: P(misaligned letter), ``[prompt, variant]``.
        mass_ab: P(A) + P(B), ``[prompt, variant]``.
        log_outcomes: Log-probabilities of the four :data:`OUTCOMES` (aligned letter,
            misaligned letter, error token, every other token), ``[prompt, variant, 4]``;
            ``logsumexp`` over the last axis is 0.
    """

    p_misaligned: Float[Tensor, "prompt variant"]
    mass_ab: Float[Tensor, "prompt variant"]
    log_outcomes: Float[Tensor, "prompt variant 4"]


def outcome_log_probs(
    logits: Float[Tensor, "batch vocab"], ids: AnswerIds, aligned: Sequence[str]
) -> Float[Tensor, "batch 4"]:
    """Log-probabilities of the four :data:`OUTCOMES` from last-token logits (float32).

    "Other" is the log-sum-exp over every token but A, B and ``error``, so it stays exact
    when little mass is left outside the answers.

    Example:
        >>> lp = outcome_log_probs(torch.zeros(1, 4), AnswerIds(a=0, b=1, error=2), ["B"])
        >>> lp.exp().round(decimals=2).tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    lp = logits.float().log_softmax(-1)
    is_a = torch.tensor([x == "A" for x in aligned], device=lp.device)
    p_a, p_b, p_err = lp[:, ids.a], lp[:, ids.b], lp[:, ids.error]
    answers = torch.tensor([ids.a, ids.b, ids.error], device=lp.device)
    other = lp.index_fill(-1, answers, -torch.inf).logsumexp(-1)
    return torch.stack([torch.where(is_a, p_a, p_b), torch.where(is_a, p_b, p_a), p_err, other], -1)


def log_odds(log_outcomes: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch"]:
    """Log-odds of the misaligned answer, log P(mis) - log(1 - P(mis)), from outcome log-probs.

    Example:
        >>> round(float(log_odds(torch.tensor([0.5, 0.25, 0.125, 0.125]).log())), 4)  # log(1/3)
        -1.0986
    """
    rest = torch.cat([log_outcomes[..., :1], log_outcomes[..., 2:]], -1).logsumexp(-1)
    return log_outcomes[..., 1] - rest


def outcome_kl(
    clean: Float[Tensor, "*#batch 4"], noisy: Float[Tensor, "*#batch 4"]
) -> Float[Tensor, "*#batch"]:
    """KL(clean || noisy) in nats of two answer distributions given as outcome log-probs.

    Outcomes the clean distribution gives no mass contribute nothing (broadcasts, so one
    clean row can be compared with many noisy ones).

    Example:
        >>> p = torch.tensor([0.5, 0.5, 0.0, 0.0]).log()
        >>> q = torch.tensor([0.25, 0.25, 0.25, 0.25]).log()
        >>> round(float(outcome_kl(p, q)), 4), float(outcome_kl(p, p))
        (0.6931, 0.0)
    """
    term = clean.exp() * (clean - noisy)
    return torch.where(torch.isneginf(clean), 0.0, term).sum(-1)


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
    n_layers, n_ctx, d_model = (
        int(model.cfg.n_layers),
        int(model.cfg.n_ctx),
        int(model.cfg.d_model),
    )
    end = n_layers - 1
    # Packed: every (layer, variant) below the last block is one copy of the last token, plus a
    # clean copy whose last-block residual serves the variants after the last block.
    layers = [L for L in sorted(deltas) if not (packed and end == L)]
    copy_layer = torch.tensor([L for L in layers for _ in deltas[L]] + [-1], device=device)
    copy_delta = torch.cat([deltas[L].float() for L in layers] + [torch.zeros(1, d_model)])
    copy_delta = copy_delta.to(device)
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
        for c0 in range(0, len(copy_delta), width):
            logits, resid = _packed(
                model, ids, last, copy_layer[c0 : c0 + width], copy_delta[c0 : c0 + width]
            )
            chunks.append(logits)
            clean = resid if clean is None else torch.cat([clean, resid], 1)
        logits = torch.cat(chunks, 1)
        for L in layers:
            logits_of[L].append(logits[:, copy_layer == L])
        if end in deltas:  # after the last block: final norm and unembedding only
            assert clean is not None  # copy_delta holds at least its zero row: one chunk
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
        copy_in: Which copy fills each slot, ``[batch, slot]`` (clamped into ``0 .. n_copy - 1``,
            so it is a valid index everywhere; it means something only where ``is_copy``).
        is_copy: Whether the slot holds a copy, ``[batch, slot]`` (False on prompt tokens and
            filler).
    """

    token_at: Int[Tensor, "batch slot"]
    blocked: Bool[Tensor, "batch 1 slot slot"]
    copy_at: Int[Tensor, "batch copy"]
    copy_in: Int[Tensor, "batch slot"]
    is_copy: Bool[Tensor, "batch slot"]


def _packed_layout(last: Int[Tensor, " batch"], n_copy: int) -> _PackedLayout:
    """The packed layout of rows whose last tokens are at ``last``, with ``n_copy`` copies each.

    Example:
        Row 0 is ``BOS x y`` (``last`` 2), row 1 ``BOS x`` (``last`` 1), two copies each. The
        packed rows are ``BOS x y y`` (slots 2, 3: copies 0, 1 of ``y``, both at position 2)
        and ``BOS x x x`` (slots 1, 2: copies of ``x`` at position 1; slot 3 is filler):

        >>> layout = _packed_layout(torch.tensor([2, 1]), n_copy=2)
        >>> layout.token_at.tolist()
        [[0, 1, 2, 2], [0, 1, 1, 1]]
        >>> layout.copy_at.tolist(), layout.is_copy.int().tolist()
        ([[2, 3], [1, 2]], [[0, 0, 1, 1], [0, 1, 1, 0]])

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
    copy_number = slot[None] - first_copy  # negative on the prompt's tokens
    copy_in = copy_number.clamp(0, n_copy - 1)
    is_copy = (copy_number >= 0) & (copy_number < n_copy)
    copy_at = first_copy + torch.arange(n_copy, device=last.device)
    return _PackedLayout(token_at, blocked, copy_at, copy_in, is_copy)


def _at_slots(x: Tensor, slots: Int[Tensor, "batch n"]) -> Tensor:
    """``x[i, slots[i, n]]`` for every row ``i``: ``[batch, n, d]`` from ``[batch, slot, d]``."""
    return x.gather(1, slots[..., None].expand(-1, -1, x.shape[-1]))


def _packed(
    model: Any, ids: Tensor, last: Tensor, copy_layer: Tensor, copy_delta: Tensor
) -> tuple[Tensor, Tensor]:
    """Logits ``[batch, copy, vocab]`` and last-block residuals of copies of each last token.

    One forward of the packed rows (:func:`_packed_layout`): copy ``c`` of row ``i`` sits at
    slot ``last[i] + c`` with the last token's id and position and attends to the prompt and
    to itself only, so up to block ``copy_layer[c]`` it computes exactly the last token of the
    unpacked prompt; ``copy_delta[c]`` is then added to its ``blocks.L.hook_resid_post``, and
    the later blocks see the same keys and values as an unpacked run with that delta at the
    last token. A copy with ``copy_layer`` -1 gets no delta (the clean copy). The residuals
    are the last block's ``hook_resid_post`` at the copies, ``[batch, copy, d_model]``.

    ``tests/strategies/test_s2_noise.py::test_packed_equals_one_forward_per_variant`` checks
    that every copy's readout equals one unpadded forward per (prompt, variant).
    """
    n_layers = int(model.cfg.n_layers)
    layout = _packed_layout(last, len(copy_delta))
    recorded: list[Tensor] = []

    def add_deltas(layer: int) -> Any:
        # Each copy patched after ``layer`` gets its delta in its own slot; nothing elsewhere.
        here = layout.is_copy & (copy_layer[layout.copy_in] == layer)
        add = torch.where(here[..., None], copy_delta[layout.copy_in], 0.0)
        return lambda act, hook: act + add.to(act.dtype)

    def record_copies(act: Tensor, hook: Any) -> Tensor:
        recorded.append(_at_slots(act, layout.copy_at))
        return act

    patched_blocks = [L for L in copy_layer.unique().tolist() if L >= 0]  # -1: the clean copy
    hooks = [(hook_name("resid_post", L, n_layers), add_deltas(L)) for L in patched_blocks]
    hooks.append((hook_name("resid_post", n_layers - 1, n_layers), record_copies))
    # An additive float mask: read alike by the native tiny model and by HF models (which
    # would take a boolean 4-D mask as "may attend").
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    mask = torch.zeros(layout.blocked.shape, dtype=dtype, device=ids.device)
    mask = mask.masked_fill(layout.blocked, torch.finfo(dtype).min)
    with model.hooks(fwd_hooks=hooks):
        logits = model(
            ids.gather(1, layout.token_at), attention_mask=mask, position_ids=layout.token_at
        )
    return _at_slots(logits, layout.copy_at), recorded[-1]


def _stacked(model: Any, ids: Tensor, last: Tensor, layer: int, d: Tensor) -> Tensor:
    """Logits ``[batch, variant, vocab]``: one full forward per variant, stacked in the batch."""
    n_var, b = len(d), len(ids)
    rows = torch.arange(b * n_var, device=ids.device)
    last_r = last.repeat_interleave(n_var)
    delta = d.repeat(b, 1)

    def hook(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        act[rows, last_r] += delta.to(act.dtype)
        return act

    hooks = [(hook_name("resid_post", layer, int(model.cfg.n_layers)), hook)]
    logits = last_logits(model, ids.repeat_interleave(n_var, 0), last_r, hooks=hooks)
    return logits.view(b, n_var, -1)


def curves_by_variant(
    res: Mapping[int, Sequence[Tensor]], names: Sequence[str], n_draws: int
) -> dict[LayerKey, dict[str, VariantCurves]]:
    """The score layout: block -> variant -> ``{"p_misaligned", "mass_ab"}``.

    Each is a list of ``n_draws`` curves over the coefficients (means over prompts). ``res``
    maps blocks to :class:`VariantReadout` (or any sequence starting with P(misaligned) and
    P(A)+P(B)).
    """
    out: dict[LayerKey, dict[str, VariantCurves]] = {}
    for layer, r in res.items():
        p, m = (x.mean(0).view(len(names), n_draws, -1) for x in (r[0], r[1]))
        out[str(layer)] = {
            k: {"p_misaligned": p[i].tolist(), "mass_ab": m[i].tolist()}
            for i, k in enumerate(names)
        }
    return out


def cached_direction(
    ctx: ModelContext, layer: int, n_pairs: int, blocks: Sequence[int] = ()
) -> tuple[Tensor, list]:
    """The S1/S2 contrast direction at a block and the evaluation prompts (memoised per context).

    The contrast prompts' residuals are read once for ``layer`` and every block of ``blocks``
    (a strategy's whole grid: one forward per side up to the deepest block,
    :func:`~poser_lens.strategies.common.contrast_residuals`) and memoised, with each block's
    direction, under the grid, so S1 and S2, whose grids are the same by default, share one
    pass of the contrast prompts. Each block's direction is what
    :func:`~poser_lens.strategies.common.contrast_direction` gives (the same forwards, stopped
    at that block). Strategies with different grids share nothing, as
    :func:`contrast_passes` counts them.
    """
    grid = tuple(sorted({layer, *blocks}))

    def direction() -> tuple[Tensor, list]:
        crit, clean, rest = ctx.cached(
            ("contrast_residuals", n_pairs, grid),
            lambda: contrast_residuals(
                ctx.model, ctx.tokenizer, ctx.prompts, grid, n_pairs=n_pairs
            ),
        )
        i = grid.index(layer)
        return mass_mean()(crit[:, i].contiguous(), clean[:, i].contiguous()), rest

    return ctx.cached(("contrast_direction", layer, n_pairs, grid), direction)


def contrast_passes(
    shape: WorkShape, blocks: Sequence[int], n_pairs: int, *, reference: bool = False
) -> list[Pass]:
    """The work of the contrast directions at ``blocks`` (:func:`cached_direction`).

    The critical and the clean prompt of each pair run once, up to the deepest block (nothing
    after it is read: no final norm, no unembedding); S1 and S2 share them through the
    context's memo when their grids are the same. The reference runs each contrast prompt
    once, a full forward whose hidden states give every block.

    Example:
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> [(p.blocks, p.unembed) for p in contrast_passes(shape, [5, 15], 15)]
        [(16, 'none'), (16, 'none')]
    """
    pairs = min(n_pairs, shape.n_critical)
    sides = (("critical", shape.seq_critical), ("clean", shape.seq_clean))
    if reference:
        return [Pass(f"contrast prompts ({side})", pairs, seq) for side, seq in sides]
    batch = max(1, min(RESIDUAL_BATCH, pairs))
    deepest = max(blocks)
    grid = ",".join(str(b) for b in sorted(set(blocks)))
    return [
        Pass(
            f"contrast prompts ({side}) to block {deepest}",
            pairs,
            shape.padded(batch, seq, among=pairs),
            batch=batch,
            blocks=deepest + 1,
            unembed="none",
            shared=f"contrast:{n_pairs}:{grid}:{side}",
        )
        for side, seq in sides
    ]


def n_evaluated(shape: WorkShape, n_pairs: int, n_prompts: int) -> int:
    """S1/S2's evaluation prompts: the valid prompts not in contrast pairs, ``n_prompts`` at most.

    Example:
        >>> n_evaluated(WorkShape(2, 64, 40, 10, 20, 25, 20, 18), n_pairs=15, n_prompts=100)
        30
    """
    return max(0, min(n_prompts, shape.n_valid - min(n_pairs, shape.n_critical)))


def variant_passes(
    shape: WorkShape,
    blocks: Sequence[int],
    n_variants: int,
    n_prompts: int,
    *,
    packed: bool = True,
    batch_size: int = 32,
    reference: bool = False,
) -> list[Pass]:
    """The work of :func:`variant_readout`: ``n_variants`` interventions at each block.

    Packed, a prompt runs once with one copy of its last token per (block, variant) below the
    last block plus a clean copy, in as many forwards as the context needs; variants after the
    last block only rerun the unembedding. Unpacked, each variant is a full forward of the
    prompt (stacked in the batch); the reference runs the same, one forward at a time.

    Example:
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> [(p.n, p.seq) for p in variant_passes(shape, [5, 15, 25, 35], 36, 100)]
        [(100, 526.0)]
        >>> variant_passes(shape, [5, 15, 25, 35], 36, 100, reference=True)[0].n
        14400
    """
    if reference:
        return [Pass("variants (a forward each)", n_prompts * n_variants * len(blocks), shape.seq)]
    batch = max(1, min(batch_size, n_prompts))
    seq = shape.padded(batch, among=n_prompts)  # prompts sorted by length
    if not packed:
        n = n_prompts * n_variants * len(blocks)
        return [Pass("variants (stacked)", n, seq, batch * n_variants)]
    end = shape.n_layers - 1
    copies = n_variants * sum(1 for b in blocks if b != end) + 1  # and the clean copy
    width = max(1, shape.n_ctx - math.ceil(seq) + 1)
    chunks = math.ceil(copies / width)
    out = [Pass("variants (packed)", n_prompts * chunks, seq - 1 + copies / chunks, batch)]
    if end in blocks:
        out.append(unembed_pass("variants after the last block", n_prompts * n_variants))
    return out


def steering_work(
    shape: WorkShape, cfg: Any, n_variants: int, *, reference: bool = False
) -> list[Pass]:
    """The work of S1 or S2: contrast directions at every scored block, then the variants.

    ``cfg`` is the strategy's config (``layer_fracs``, ``layer_frac``, ``n_pairs``,
    ``n_prompts``, ``packed``, ``batch_size``); ``n_variants`` the interventions per block.

    Example:
        >>> from poser_lens.strategies.s2_noise import NoiseConfig
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> [p.label for p in steering_work(shape, NoiseConfig(), 36)][-1]
        'variants (packed)'
    """
    blocks = layer_grid(shape.n_layers, (*cfg.layer_fracs, cfg.layer_frac))
    return [
        *contrast_passes(shape, blocks, cfg.n_pairs, reference=reference),
        *variant_passes(
            shape,
            blocks,
            n_variants,
            n_evaluated(shape, cfg.n_pairs, cfg.n_prompts),
            packed=cfg.packed,
            batch_size=cfg.batch_size,
            reference=reference,
        ),
    ]


def choose_coeff(coeffs: Sequence[float], mass: Sequence[Sequence[float]], keep: float) -> float:
    """The largest coefficient at which the mean mass curve keeps ``keep`` of its coeff-0 value.

    Label-free (Poser's Fig 11): it looks at P(A)+P(B) only, never at which model is the faker.
    The curve must stay above the threshold at every smaller coefficient too.

    Example:
        >>> choose_coeff([0, 1, 2, 3], [[1.0, 0.95, 0.5, 0.9], [1.0, 0.95, 0.7, 0.9]], 0.9)
        1
    """
    curve = np.mean(np.asarray(mass, dtype=float), axis=0)
    ok = curve >= keep * curve[0]
    n_ok = len(ok) if ok.all() else int(np.argmin(ok))
    return coeffs[max(n_ok - 1, 0)]


def mean_curve(
    score: CurvesScore, variant: str, layer_frac: float, key: CurveKey = "p_misaligned"
) -> np.ndarray:
    """A stored curve over the coefficients, averaged over draws, at a layer.

    ``key``: ``p_misaligned``, ``mass_ab`` or (S2) ``log_odds``, ``kl``.
    """
    block = score["layers"][str(resolve_layer(score["n_layers"], float(layer_frac)))]
    return np.mean(np.asarray(block[variant][key], dtype=float), axis=0)


def rise(
    score: CurvesScore,
    variant: str,
    layer_frac: float,
    coeff: float,
    key: CurveKey = "p_misaligned",
) -> float:
    """Mean P(misaligned) at ``coeff`` minus at coefficient 0 (averaged over draws).

    ``variant`` is a noise kind (S2) or a sign (S1); ``key="log_odds"`` gives the rise of the
    mean log-odds of the misaligned answer instead.
    """
    curve = mean_curve(score, variant, layer_frac, key)
    return float(curve[score["coeffs"].index(coeff)] - curve[0])


def rise_at(
    score: CurvesScore,
    variant: str,
    layer_frac: float,
    strength: float,
    key: CurveKey = "p_misaligned",
) -> float:
    """:func:`rise` at any noise strength, linearly interpolated between grid coefficients.

    Example:
        >>> s = {"n_layers": 1, "coeffs": [0.0, 1.0, 2.0],
        ...      "layers": {"0": {"u": {"p_misaligned": [[0.1, 0.3, 0.7]]}}}}
        >>> round(rise_at(s, "u", 0.0, 1.5), 6)
        0.4
    """
    curve = mean_curve(score, variant, layer_frac, key)
    return float(np.interp(strength, np.asarray(score["coeffs"], dtype=float), curve) - curve[0])


def kl_strength(coeffs: ArrayLike, kl: ArrayLike, target: float) -> float:
    """The noise strength at which a mean KL curve first reaches ``target`` (interpolated).

    Linear interpolation between the two grid coefficients around the first crossing; the
    largest coefficient when the curve never reaches the target (also for a NaN curve).

    Example:
        >>> kl_strength([0, 1, 2, 4], [0.0, 0.1, 0.3, 0.9], 0.6)
        3.0
        >>> kl_strength([0, 1, 2], [0.0, 0.1, 0.2], 0.5)
        2.0
    """
    c, k = np.asarray(coeffs, dtype=float), np.asarray(kl, dtype=float)
    hit = np.nonzero(k >= target)[0]
    if len(hit) == 0:
        return float(c[-1])
    i = int(hit[0])
    if i == 0:
        return float(c[0])
    return float(c[i - 1] + (target - k[i - 1]) / (k[i] - k[i - 1]) * (c[i] - c[i - 1]))


def mass_curve(score: CurvesScore, variant: str, layer_frac: float) -> list[float]:
    """Mean P(A)+P(B) per coefficient (averaged over draws) at a layer."""
    return mean_curve(score, variant, layer_frac, "mass_ab").tolist()
