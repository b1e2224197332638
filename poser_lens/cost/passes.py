"""The passes the strategies are made of, as the cost model declares them.

Building blocks of the declared work (:mod:`poser_lens.cost.declarations`): the residual
stream of a set of texts, the final norm and unembedding of stored residuals, the forwards of
the prompts with a critical fact, S1/S2's contrast directions and packed variants, and S3's
learning curves. Each is a :class:`~poser_lens.cost.flops.Pass` (or a list of them) of one
(model, family) of a :class:`~poser_lens.cost.shape.WorkShape`; with ``reference`` set, the
same settings run the way the Poser code runs its strategies (one prompt per forward, a full
forward with every hidden state, nothing shared).

Work that the strategies of one context share is named by the run's own memo key
(:mod:`poser_lens.strategies.memo`), never by a string written here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from poser_lens.cost.flops import Backward, Pass
from poser_lens.cost.shape import WorkShape
from poser_lens.strategies.common import RESIDUAL_BATCH, layer_grid
from poser_lens.strategies.memo import (
    ContrastResiduals,
    CriticalForwards,
    InitialHeldout,
    LastResiduals,
)


def residual_pass(
    label: str,
    shape: WorkShape,
    n: int,
    seq: float,
    texts: str,
    *,
    spread: float | None = None,
    reference: bool = False,
) -> Pass:
    """The work of :func:`~poser_lens.strategies.common.last_residuals` on ``n`` texts.

    Texts of mean length ``seq``. Every block runs (every block's residual is read), but
    neither the final norm nor the unembedding (:func:`poser_lens.activations.collect` stops
    after the last residual); texts sorted by length in batches (padding:
    :meth:`WorkShape.padded`, ``spread`` passed on). The strategies that read the same set of
    ``texts`` (``valid``, ``counterfactual``, ``concept:<name>``) of one (model, family) share
    it, as the run's memo does (:class:`~poser_lens.strategies.memo.LastResiduals`). The
    reference runs one text per full forward (every position unembedded) and shares nothing.

    Example:
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> p = residual_pass("valid prompts", shape, 320, 350.0, "valid")
        >>> p.batch, p.seq, p.shared
        (32, 360.0, 'LastResiduals():valid')
    """
    if reference:
        return Pass(label, n, seq)
    batch = max(1, min(RESIDUAL_BATCH, n))
    padded = shape.padded(batch, seq, among=n, spread=spread)
    shared = LastResiduals().shared(texts)
    return Pass(label, n, padded, batch=batch, unembed="none", shared=shared)


def unembed_pass(label: str, n: int) -> Pass:
    """The final norm and unembedding of ``n`` stored final residuals, no blocks.

    The work of :func:`~poser_lens.strategies.common.logits_from_final_residual` (and of the
    variants after the last block of
    :func:`~poser_lens.strategies.steering.engine.variant_readout`).

    Example:
        >>> p = unembed_pass("own answers", 10)
        >>> p.blocks, p.tokens
        (0, 10)
    """
    return Pass(label, n, 1, blocks=0)


def answered_residual_passes(shape: WorkShape, n: int, *, reference: bool = False) -> list[Pass]:
    """The residuals of the first ``n`` valid prompts (:func:`residual_pass`), their answers.

    The answers come from the stored final residuals
    (:func:`~poser_lens.strategies.common.readout_from_residuals`); the reference reads them
    from the same full forward.

    Example:
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> [p.label for p in answered_residual_passes(shape, 300)]
        ['valid prompts', 'answers from the final residuals']
    """
    if reference:
        return [residual_pass("valid prompts", shape, n, shape.seq, "valid", reference=True)]
    return [
        residual_pass("valid prompts", shape, n, shape.seq, "valid"),
        unembed_pass("answers from the final residuals", n),
    ]


def critical_pass(
    label: str,
    shape: WorkShape,
    cfg: Any,
    *,
    repeats: int = 1,
    backward: Backward = "none",
    shared: bool = False,
    reference: bool = False,
) -> Pass:
    """Full forwards of the first ``cfg.n_prompts`` prompts with a critical fact (S6, patching).

    In stored order, ``cfg.batch_size`` at a time (so padded, :meth:`WorkShape.padded`),
    ``repeats`` times (patching: once per block), optionally with a backward. ``shared``: the
    plain forward of :func:`~poser_lens.strategies.common.critical_forwards` (S6's attention
    and the patching detector's clean readout), counted once between the strategies whose
    settings match, as the run's memo shares it
    (:class:`~poser_lens.strategies.memo.CriticalForwards`). The reference runs one prompt per
    forward, unpadded, and shares nothing.

    Example:
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> from poser_lens.strategies.s6_attentiveness import S6Config
        >>> p = critical_pass("attention", shape, S6Config(n_prompts=50, batch_size=64))
        >>> p.n, round(p.seq), p.batch
        (50, 448, 50)
    """
    n = min(cfg.n_prompts, shape.n_critical)
    if reference:
        return Pass(label, n * repeats, shape.seq_critical, backward=backward)
    rows = max(1, min(cfg.batch_size, n))
    seq = shape.padded(rows, shape.seq_critical)
    key = CriticalForwards(cfg.n_prompts, cfg.batch_size).shared() if shared else None
    return Pass(label, n * repeats, seq, rows, backward=backward, shared=key)


def contrast_passes(
    shape: WorkShape, blocks: Sequence[int], n_pairs: int, *, reference: bool = False
) -> list[Pass]:
    """The work of the contrast directions at ``blocks`` (S1, S2's ``cached_direction``).

    The critical and the clean prompt of each pair run once, up to the deepest block (nothing
    after it is read: no final norm, no unembedding); S1 and S2 share them through the
    context's memo when their grids are the same
    (:class:`~poser_lens.strategies.memo.ContrastResiduals`, one part per side). The
    reference runs each contrast prompt once, a full forward whose hidden states give every
    block.

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
    key = ContrastResiduals(n_pairs, tuple(sorted(set(blocks))))
    return [
        Pass(
            f"contrast prompts ({side}) to block {deepest}",
            pairs,
            shape.padded(batch, seq, among=pairs),
            batch=batch,
            blocks=deepest + 1,
            unembed="none",
            shared=key.shared(side),
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
    """The work of S1/S2's ``variant_readout``: ``n_variants`` interventions at each block.

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


def curve_passes(
    shape: WorkShape,
    cfg: Any,
    *,
    backward: Literal["inputs", "weights"],
    grad_blocks: int | None = None,
    weight_copies: int = 0,
    reference: bool = False,
) -> list[Pass]:
    """The work of one S3 ``learning_curve``: ``n_steps`` training steps and the held-out reads.

    Each step trains on a random batch of ``batch_size`` prompts (a full forward, the backward
    from the loss down through ``grad_blocks`` blocks); the held-out prompts are read before
    the first step (``initial_heldout``: once per model and family, shared by every curve,
    :class:`~poser_lens.strategies.memo.InitialHeldout`) and after each. The reference reads
    the held-out prompts one at a time, every curve its own first read. ``cfg`` is the
    strategy's config (``n_steps``, ``batch_size``, ``n_heldout``).

    Example:
        >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
        >>> from poser_lens.strategies.s3_learning_speed import FullSpeedConfig
        >>> passes = curve_passes(shape, FullSpeedConfig(), backward="weights")
        >>> [(p.n, p.backward, p.shared) for p in passes]
        [(32, 'weights', None), (16, 'none', 'InitialHeldout(n_heldout=16)'), (128, 'none', None)]
    """
    heldout = cfg.n_heldout
    train = Pass(
        "training steps",
        cfg.n_steps * cfg.batch_size,
        shape.padded(cfg.batch_size),
        cfg.batch_size,
        backward=backward,
        grad_blocks=grad_blocks,
        weight_copies=weight_copies,
    )
    if reference:
        reads = (cfg.n_steps + 1) * heldout
        return [train, Pass("held-out prompts", reads, shape.seq, weight_copies=weight_copies)]
    seq = shape.padded(heldout)
    return [
        train,
        Pass(
            "held-out prompts before training",
            heldout,
            seq,
            heldout,
            shared=InitialHeldout.shared_of(n_heldout=heldout),
        ),
        Pass(
            "held-out prompts",
            cfg.n_steps * heldout,
            seq,
            heldout,
            weight_copies=weight_copies,
        ),
    ]


__all__ = [
    "answered_residual_passes",
    "contrast_passes",
    "critical_pass",
    "curve_passes",
    "n_evaluated",
    "residual_pass",
    "steering_work",
    "unembed_pass",
    "variant_passes",
]
