"""Each strategy's work on one (model, family), as the cost model counts it.

The one description of what a strategy's ``score_model`` runs, for the cost model: a function
per strategy (registered by name in :data:`DECLARATIONS`) turns the strategy's config and a
:class:`~poser_lens.cost.shape.WorkShape` into :class:`~poser_lens.cost.flops.Pass` es, built
from :mod:`poser_lens.cost.passes`. The strategies themselves know nothing of FLOPs. Work they
share is named by the run's memo keys (:mod:`poser_lens.strategies.memo`), and
``tests/test_cost.py`` checks every declaration against torch's profiler on a real
``score_model``.

Example:
    >>> from poser_lens.strategies import get_strategy
    >>> shape = WorkShape(40, 2048, 300, 150, 350, 450, 350, 325)
    >>> [p.label for p in work(get_strategy("s5_decision_speed"), shape)]
    ['valid prompts', 'answers from the final residuals']
    >>> work(get_strategy("ensemble"), shape)
    []
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from poser_lens.cost.flops import Pass
from poser_lens.cost.passes import (
    answered_residual_passes,
    critical_pass,
    curve_passes,
    residual_pass,
    steering_work,
)
from poser_lens.cost.shape import WorkShape
from poser_lens.data.concepts import CONCEPT_PAIRS
from poser_lens.hooks import resolve_layer
from poser_lens.strategies import STRATEGY_NAMES, strategy_class
from poser_lens.strategies.base import Strategy

#: A strategy's declared work: ``(config, shape, reference) -> passes``. ``reference``: the
#: same settings run the way the Poser code runs its strategies (one prompt per forward, a
#: full forward with every hidden state, no early stop, every position unembedded, each
#: variant (coefficient, noise draw, patched block) a forward of its own, nothing shared
#: between strategies).
Declaration = Callable[[Any, WorkShape, bool], list[Pass]]

#: Strategy name -> its declared work (:func:`declares`).
DECLARATIONS: dict[str, Declaration] = {}


def declares(*names: str) -> Callable[[Declaration], Declaration]:
    """Register a function as the declared work of the strategies ``names``."""

    def register(fn: Declaration) -> Declaration:
        for name in names:
            DECLARATIONS[name] = fn
        return fn

    return register


def work(strategy: Strategy, shape: WorkShape, *, reference: bool = False) -> list[Pass]:
    """The passes ``strategy.score_model`` runs on one (model, family) of this shape.

    Args:
        strategy: The strategy, with its config.
        shape: The model's depth and the family's prompts.
        reference: The same settings run the way the Poser code runs its strategies
            (:data:`Declaration`).

    Returns:
        The passes; none for a strategy that runs no model.

    Raises:
        KeyError: For a strategy that runs a model and declares no work.
    """
    if not strategy.needs_model and strategy.name not in DECLARATIONS:
        return []
    if strategy.name not in DECLARATIONS:
        raise KeyError(f"{strategy.name}: no declared work (poser_lens.cost.declarations)")
    return DECLARATIONS[strategy.name](strategy.config, shape, reference)


@declares("random")
def _no_model(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """Runs no model."""
    return []


@declares("confidence_baseline", "s5_decision_speed")
def _answered_residuals(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """Every residual of the first ``n_prompts`` valid prompts (shared) and their own answers.

    S5's probes (scikit-learn, on the CPU) are not counted. The reference reads the answers
    from the same full forward.
    """
    n = min(cfg.n_prompts, shape.n_valid)
    return answered_residual_passes(shape, n, reference=reference)


@declares("patching")
def _patching(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """The counterfactuals' residuals (shared with S6), a clean readout, one per block."""
    n = min(cfg.n_prompts, shape.n_critical)
    return [
        residual_pass(
            "counterfactuals", shape, n, shape.seq_clean, "counterfactual", reference=reference
        ),
        critical_pass("clean readout", shape, cfg, shared=True, reference=reference),
        critical_pass(
            "patched, per block", shape, cfg, repeats=shape.n_layers, reference=reference
        ),
    ]


@declares("s1_belief", "s2_noise")
def _steering(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """The contrast directions at each scored block, then every variant of the sweep.

    S1's variants are (sign, coefficient), S2's (kind, draw, coefficient): the config's
    ``n_variants`` (:class:`~poser_lens.strategies.steering.sweep.SweepConfig`).
    """
    return steering_work(shape, cfg, cfg.n_variants, reference=reference)


@declares("s3_lora")
def _lora_speed(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """A learning curve per adapter block; the gradient flows down to the adapter only."""
    blocks = sorted({resolve_layer(shape.n_layers, f) for f in cfg.layers})
    return [
        p
        for block in blocks
        for p in curve_passes(
            shape,
            cfg,
            backward="inputs",
            grad_blocks=shape.n_layers - 1 - block,
            reference=reference,
        )
    ]


@declares("s3_full")
def _full_speed(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """One learning curve of every weight of a copy (held with its gradients and AdamW).

    The copy, its gradients and AdamW's two moments are four more copies of the weights.
    """
    return curve_passes(shape, cfg, backward="weights", weight_copies=4, reference=reference)


@declares("s4_concepts")
def _concepts(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """The residuals of the first ``n_prompts`` valid prompts and of every concept example."""
    n = min(cfg.n_prompts, shape.n_valid)
    needed = {name for c in cfg.concepts for name in CONCEPT_PAIRS[c]}
    return [
        residual_pass("valid prompts", shape, n, shape.seq, "valid", reference=reference),
        *(
            residual_pass(
                f"concept examples ({name})",
                shape,
                count,
                seq,
                f"concept:{name}",
                spread=longest - seq,
                reference=reference,
            )
            for name, count, seq, longest in shape.concepts
            if name in needed
        ),
    ]


@declares("defection_probe")
def _defection(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """The residuals of the first ``n_prompts`` valid prompts (shared) and of the contrast texts.

    The valid prompts' forward is the one S4, S5, S6 and the confidence baseline read
    (``valid``); the contrast pairs' questions, "yes" and "no" texts run once together
    (``defection``: shared by settings that read the same pairs).
    """
    n = min(cfg.n_prompts, shape.n_valid)
    lengths = [t for pair in shape.defection[: cfg.n_pairs] for t in pair]
    mean = sum(lengths) / max(len(lengths), 1)
    return [
        residual_pass("valid prompts", shape, n, shape.seq, "valid", reference=reference),
        residual_pass(
            "contrast pairs",
            shape,
            len(lengths),
            mean,
            f"defection:{cfg.contrast}:{cfg.n_pairs}",
            spread=max(lengths, default=0) - mean,
            reference=reference,
        ),
    ]


@declares("s6_attention")
def _attention(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """A full forward of the prompts with a critical fact, caching the attention patterns.

    The forward is the patching detector's clean readout too
    (:func:`~poser_lens.strategies.common.critical_forwards`).
    """
    return [critical_pass("attention patterns", shape, cfg, shared=True, reference=reference)]


@declares("s6_saliency")
def _saliency(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """A forward and a backward to the token embeddings of the prompts with a critical fact."""
    return [critical_pass("gradients", shape, cfg, backward="inputs", reference=reference)]


@declares("s6_counterfactual")
def _counterfactual(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """Every residual of the prompts with a critical fact and of their counterfactuals.

    The prompts are valid prompts, whose residuals S4, S5 and the confidence baseline read
    too (shared); the counterfactuals are shared with the patching detector.
    """
    n = min(cfg.n_prompts, shape.n_critical)
    return [
        residual_pass(
            "prompts with a critical fact",
            shape,
            n,
            shape.seq_critical,
            "valid",
            reference=reference,
        ),
        residual_pass(
            "their counterfactuals",
            shape,
            n,
            shape.seq_clean,
            "counterfactual",
            reference=reference,
        ),
    ]


@declares("weight_noise")
def _weight_noise(cfg: Any, shape: WorkShape, reference: bool) -> list[Pass]:
    """A full forward of the first ``n_prompts`` valid prompts per noise level and draw.

    The noise-free level runs once, every other level once per draw; prompts sorted by
    length, ``batch_size`` at a time (:func:`~poser_lens.readout.last_token_logits`, every position
    unembedded). Noising one block at a time holds one block's weight matrices twice (a
    clean copy), a fraction of a copy of the weights, so no weight copy is counted. The
    reference runs one prompt per forward.
    """
    n = min(cfg.n_prompts, shape.n_valid)
    levels = 1 + cfg.n_draws * (len(cfg.sigmas) - 1)
    if reference:
        return [Pass("noise levels x draws (a forward each)", n * levels, shape.seq)]
    rows = max(1, min(cfg.batch_size, n))
    return [Pass("noise levels x draws", n * levels, shape.padded(rows, among=n), rows)]


def undeclared() -> list[str]:
    """Registered strategies that run a model and declare no work (none, as a test checks).

    Example:
        >>> undeclared()
        []
    """
    return [n for n in STRATEGY_NAMES if n not in DECLARATIONS and strategy_class(n).needs_model]


__all__ = ["DECLARATIONS", "Declaration", "declares", "undeclared", "work"]
