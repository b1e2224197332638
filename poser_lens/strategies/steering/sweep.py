"""The steering sweep: one generic score for S1 and S2, specialised by a small spec.

S1 adds a contrast direction times a signed coefficient; S2 adds noise times the direction's
norm. Everything else is one sweep (:func:`steering_sweep`), as TransformerLens's
``patching.py`` writes one generic patching function and specialises it: per model and
family, the contrast direction ``v`` at every block of the grid
(:func:`~poser_lens.strategies.steering.directions.cached_direction`), a delta per variant
``unit[variant, draw] * coeff * scale(v)`` added at the last token after the block (the packed
engine, :func:`~poser_lens.strategies.steering.engine.variant_readout`), and the curves per
block and variant (:func:`~poser_lens.strategies.steering.curves.curves_by_variant`). A
strategy says what differs in a :class:`Steering` and gives its units;
:class:`SteeringStrategy` holds ``score_model`` and ``restrict``; :class:`SweepConfig` the
settings both share.

Example:
    >>> from poser_lens.strategies.s1_belief import BeliefStrategy
    >>> from poser_lens.strategies.s2_noise import NoiseStrategy
    >>> BeliefStrategy.steering.axis, NoiseStrategy.steering.axis
    ('signs', 'kinds')
    >>> NoiseStrategy(n_draws=3).config.n_variants  # 2 kinds x 3 draws x 9 coefficients
    54
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar, cast

import torch
from jaxtyping import Float
from torch import Tensor

from poser_lens.config import (
    Config,
    DepthFraction,
    NonEmpty,
    NonNegativeFloat,
    PositiveInt,
)
from poser_lens.hooks import resolve_layer
from poser_lens.strategies.base import (
    PROMPT_INDEX,
    ModelContext,
    PerPromptScore,
    Strategy,
    kept_positions,
)
from poser_lens.strategies.common import kept_mean, prompt_positions
from poser_lens.strategies.steering.curves import curves_by_variant
from poser_lens.strategies.steering.directions import cached_direction
from poser_lens.strategies.steering.engine import variant_readout
from poser_lens.strategies.steering.outcomes import log_odds, outcome_kl
from poser_lens.strategies.steering.scores import (
    VARIANT_AXIS,
    CurveKey,
    CurvesScore,
    pack_variants,
    unpack_variants,
)

#: Poser's layer 15 of 40.
MIDDLE = 15 / 40
#: A coefficient sweep (multiples of a direction's norm), at least one value, none negative.
Coefficients = Annotated[tuple[NonNegativeFloat, ...], NonEmpty()]


class Blocks(NamedTuple):
    """The blocks a sweep scores on one model.

    Attributes:
        grid: Every scored block, ascending (the sensitivity grid and the headline).
        head: The headline block.
    """

    grid: list[int]
    head: int


@dataclass(frozen=True)
class SweepConfig(Config):
    """The settings S1 and S2 share (each strategy's config adds its own).

    Subclasses name their variants (:attr:`variants`, :attr:`headline_variant`, and
    :attr:`draws` when they draw more than once) and the order their settings are saved in
    (``FIELD_ORDER``: every field once), so saved configs keep the order they had before the
    shared fields moved here; declare them ``@dataclass(frozen=True, repr=False)`` so the
    ``repr`` follows that order too.

    Attributes:
        layer_frac: Headline layer as a fraction of depth (Poser: 15 of 40).
        layer_fracs: Layers scored (fractions of depth) for the sensitivity grid (may be empty:
            the headline layer only).
        coeffs: The coefficient sweep, starting at 0 (see each strategy's config).
        n_prompts: Evaluation prompts scored (Poser: the first 100).
        n_pairs: Contrast pairs of the direction.
        packed: Run all variants of a prompt in one sequence
            (:func:`~poser_lens.strategies.steering.engine.variant_readout`); variants after
            the last block need only the final norm and unembedding.
        batch_size: Prompts per forward.
    """

    #: Every field, in the order the config is saved and shown.
    FIELD_ORDER: ClassVar[tuple[str, ...]] = ()

    layer_frac: DepthFraction = MIDDLE
    layer_fracs: tuple[DepthFraction, ...] = (0.125, MIDDLE, 0.625, 0.875)
    coeffs: Coefficients = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    n_prompts: PositiveInt = 100
    n_pairs: PositiveInt = 15
    packed: bool = True
    batch_size: PositiveInt = 32

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants scored (S1: signs, S2: noise kinds)."""
        raise NotImplementedError

    @property
    def headline_variant(self) -> str:
        """The variant of the headline number."""
        raise NotImplementedError

    @property
    def draws(self) -> int:
        """Draws per variant (one unless the strategy draws noise)."""
        return 1

    @property
    def n_variants(self) -> int:
        """Interventions per scored block: variants x draws x coefficients."""
        return len(self.variants) * self.draws * len(self.coeffs)

    def blocks(self, n_layers: int) -> Blocks:
        """The scored blocks of a model with ``n_layers`` blocks (each fraction resolved once).

        Example:
            >>> from poser_lens.strategies.s1_belief import BeliefConfig
            >>> BeliefConfig(layer_fracs=(0.0, 0.9)).blocks(4)
            Blocks(grid=[0, 2, 3], head=2)
        """
        head = resolve_layer(n_layers, self.layer_frac)
        return Blocks(sorted({head, *(resolve_layer(n_layers, f) for f in self.layer_fracs)}), head)

    def _ordered(self) -> list[str]:
        names = [f.name for f in dataclasses.fields(self)]
        if sorted(self.FIELD_ORDER) != sorted(names):
            raise TypeError(f"{type(self).__name__}.FIELD_ORDER must list every field once")
        return list(self.FIELD_ORDER)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON data, in ``FIELD_ORDER``."""
        d = super().to_dict()
        return {k: d[k] for k in self._ordered()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._ordered())
        return f"{type(self).__name__}({args})"


def direction(v: Tensor) -> Tensor:
    """S1's scale: the contrast direction itself."""
    return v


def direction_norm(v: Tensor) -> Tensor:
    """S2's scale: the contrast direction's norm."""
    return v.norm()


@dataclass(frozen=True)
class Steering:
    """What one steering strategy changes in :func:`steering_sweep`.

    Attributes:
        axis: The score key listing the variants (``signs``, ``kinds``).
        variant: The key naming the headline variant in ``by_prompt`` and in the settings
            (``sign``, ``kind``).
        scale: The direction ``v`` -> what every unit is multiplied by (after the
            coefficient): :func:`direction` (S1) or :func:`direction_norm` (S2).
        per_prompt: The curves kept per prompt at the headline block and variant.
        outcome_curves: Also store ``log_odds`` and ``kl`` per block, variant and draw (S2).
    """

    axis: str
    variant: str
    scale: Callable[[Tensor], Tensor]
    per_prompt: tuple[CurveKey, ...]
    outcome_curves: bool = False


def steering_sweep(
    ctx: ModelContext,
    cfg: SweepConfig,
    steering: Steering,
    units: Float[Tensor, "variant draw d_unit"],
) -> dict[str, Any]:
    """The score of a steering strategy on one (model, family).

    At every block of ``cfg.blocks``, the delta of variant ``(variant, draw, coeff)`` is
    ``units[variant, draw] * coeff * steering.scale(v)`` (``d_unit`` is 1 or ``d_model``),
    added at the last token of each evaluation prompt after the block.

    Returns:
        ``n_layers``, ``coeffs``, the variants (under ``steering.axis``), ``layers`` (block ->
        variant -> :class:`~poser_lens.strategies.steering.scores.VariantCurves`),
        ``direction_norm``, ``n_prompts``, ``by_prompt`` (when the headline variant is
        scored) and ``prompt_index``, in this order.
    """
    names = cfg.variants
    split = {"variant": len(names), "draw": cfg.draws}
    coeffs = torch.tensor(cfg.coeffs, dtype=torch.float32)
    out: dict[str, Any] = {  # keys in stored order (filled in below)
        "n_layers": ctx.n_layers,
        "coeffs": list(cfg.coeffs),
        steering.axis: list(names),
        "layers": {},
        "direction_norm": {},
    }
    blocks = cfg.blocks(ctx.n_layers)
    deltas, evals = {}, []
    for layer in blocks.grid:
        v, rest = cached_direction(ctx, layer, cfg.n_pairs, blocks.grid)
        evals = rest[: cfg.n_prompts]  # the same at every block
        deltas[layer] = pack_variants(units[:, :, None] * coeffs[:, None] * steering.scale(v))
        out["direction_norm"][str(layer)] = float(v.norm())
    res = variant_readout(
        ctx.model, ctx.tokenizer, evals, deltas, packed=cfg.packed, batch_size=cfg.batch_size
    )
    out["layers"] = curves_by_variant(res, names, cfg.draws)
    out["n_prompts"] = len(evals)
    per_variant = "prompt variant draw coeff"
    for layer, r in res.items():
        curves: dict[str, Tensor] = {}
        if steering.outcome_curves:
            lo = unpack_variants(
                r.log_outcomes.double(), f"prompt {VARIANT_AXIS} o", f"{per_variant} o", **split
            )
            curves = {"log_odds": log_odds(lo), "kl": outcome_kl(lo[..., :1, :], lo)}
            for i, name in enumerate(names):
                for key, x in curves.items():  # [prompt, variant, draw, coeff]
                    out["layers"][str(layer)][name][key] = x[:, i].mean(0).tolist()
        if layer == blocks.head and cfg.headline_variant in names:
            i = names.index(cfg.headline_variant)
            per = {
                "p_misaligned": r.p_misaligned.double(),
                "mass_ab": r.mass_ab.double(),
            }
            per = {
                k: unpack_variants(x, f"prompt {VARIANT_AXIS}", per_variant, **split)
                for k, x in per.items()
            }
            per |= curves
            out["by_prompt"] = {"layer": layer, steering.variant: cfg.headline_variant} | {
                k: per[k][:, i].mean(1).tolist() for k in steering.per_prompt
            }
    out[PROMPT_INDEX] = prompt_positions(ctx.prompts, evals)
    return out


def restrict_sweep(score: CurvesScore, keep: Set[int], steering: Steering) -> dict[str, Any]:
    """A steering score on the evaluation prompts whose valid index is in ``keep``.

    Only the headline block and variant are kept: one curve per key of
    ``steering.per_prompt``, the mean over the kept prompts (NaN when none is kept). The
    direction is the one from all contrast pairs; only the evaluation prompts are restricted.
    """
    s = cast("dict[str, Any]", score)
    bp, pos = s["by_prompt"], kept_positions(s, keep)
    width = (len(s["coeffs"]),)
    curves = {k: [kept_mean(bp[k], pos, width).tolist()] for k in steering.per_prompt}
    kept = {k: [bp[k][i] for i in pos] for k in steering.per_prompt}
    name = bp[steering.variant]
    return {
        "n_layers": s["n_layers"],
        "coeffs": list(s["coeffs"]),
        steering.axis: [name],
        "layers": {str(bp["layer"]): {name: curves}},
        "direction_norm": dict(s.get("direction_norm", {})),
        "n_prompts": len(pos),
        PROMPT_INDEX: [s[PROMPT_INDEX][i] for i in pos],
        "by_prompt": {"layer": bp["layer"], steering.variant: name} | kept,
    }


#: A steering strategy's score.
SweepScore = TypeVar("SweepScore", bound=PerPromptScore)
#: A steering strategy's config.
SweepCfg = TypeVar("SweepCfg", bound=SweepConfig)


class SteeringStrategy(Strategy[SweepScore, SweepCfg]):
    """A strategy that is :func:`steering_sweep` specialised by :attr:`steering` and :meth:`units`.

    Subclasses set :attr:`steering` and a :class:`SweepConfig` as ``config_cls``, and give
    the units of their variants; ``score_model`` and ``restrict`` are written here once.
    """

    #: What the strategy changes in the sweep.
    steering: ClassVar[Steering]
    per_prompt: ClassVar[bool] = True

    def units(self, ctx: ModelContext) -> Float[Tensor, "variant draw d_unit"]:
        """The unit of each (variant, draw), multiplied by each coefficient and the scale."""
        raise NotImplementedError

    def score_model(self, ctx: ModelContext) -> SweepScore:
        """The sweep's curves per block, variant, draw and coefficient (:func:`steering_sweep`)."""
        return cast("SweepScore", steering_sweep(ctx, self.config, self.steering, self.units(ctx)))

    def restrict(self, score: SweepScore, keep: Set[int]) -> SweepScore:
        """The score on the kept evaluation prompts (:func:`restrict_sweep`)."""
        return cast("SweepScore", restrict_sweep(cast("CurvesScore", score), keep, self.steering))
