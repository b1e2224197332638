"""Strategy 4: identify suspicious concepts (Poser: 71%).

In this module: the config :class:`ConceptConfig`, the score :class:`ConceptScore` and
:class:`ConceptStrategy` (``score_model``, ``margin`` via ``statistic``). Figure:
:func:`poser_lens.figures.s4_s6.fig07_s4_concepts` (accuracy per concept, from the sweep).

Example:
    >>> ConceptStrategy().headline
    {'concept': 'combined', 'layer_frac': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch

from poser_lens.config import Config, NonEmpty, OneOf, PositiveInt
from poser_lens.data.concepts import CONCEPT_PAIRS
from poser_lens.hooks import resolve_layer
from poser_lens.probes import DirectionFinder, cosine_scores, mass_mean
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

#: The headline layer (Poser's layer 20 of 40).
HEADLINE_LAYER = 0.5


#: A concept setting: a key of :data:`~poser_lens.data.concepts.CONCEPT_PAIRS`.
ConceptName = Annotated[str, OneOf(*CONCEPT_PAIRS, what="concept")]


@dataclass(frozen=True)
class ConceptConfig(Config):
    """Settings of strategy 4.

    Attributes:
        n_prompts: Valid prompts scored per family (the first ones; Poser used 100).
        concepts: Concept pairs to read (keys of :data:`poser_lens.data.concepts.CONCEPT_PAIRS`).
        covariance: Whiten the difference of means by the pooled covariance (Poser: no).
    """

    n_prompts: PositiveInt = 100
    concepts: Annotated[tuple[ConceptName, ...], NonEmpty()] = (
        "security",
        "competence",
        "behavior",
    )
    covariance: bool = False


class ConceptByPrompt(HeadlineByPrompt):
    """Per-prompt values of strategy 4, at the headline block (``layer``) only.

    Attributes:
        cosine: Concept -> each scored prompt's cosine (``prompt_index`` order).
    """

    cosine: dict[str, PromptValues]


class ConceptScore(PerPromptScore):
    """The score of strategy 4 on one (model, family).

    Attributes:
        n_layers: Blocks of the model.
        n_prompts: Valid prompts scored (restricted: kept).
        n_examples: Concept set name -> examples read (not in a restricted score).
        cosine: Concept -> mean cosine per block (index = block; restricted: NaN but at
            the headline block).
        prompt_index: The scored prompts' valid-prompt indices (the first ``n_prompts``).
        by_prompt: :class:`ConceptByPrompt`.
    """

    n_layers: int
    n_prompts: int
    n_examples: NotRequired[dict[str, int]]
    cosine: dict[str, list[float]]
    by_prompt: ConceptByPrompt


class ConceptStrategy(Strategy[ConceptScore, ConceptConfig]):
    """Faker = the model whose valid-prompt activations lean towards suspicious concepts.

    For each concept pair (security, competence, behaviour) the direction is the difference of
    means of the last-token residual stream (``resid_post`` of every block) over the
    suspicious examples (vulnerability, incompetence, misaligned behaviour) minus the safe
    ones (security, competence, aligned behaviour). The score of a model is, per block, the
    mean cosine (raw, uncentred, as Poser) of its valid prompts' last-token residuals with
    that direction. The paper reports 71% (Fig 7; which bar is not stated).

    The concept examples come from ``ctx.concepts`` (the runner builds them with
    :func:`poser_lens.data.concepts.concept_sets`); a strategy never generates data, so a
    missing set is an error.

    Deviations from the Poser code:
        * The examples are our own (generator banks and training split), never the scored
          benchmark prompts (Poser's behaviour concepts were the first benchmark prompts).
        * Both models of a pair read the same concept sets (Poser gave each model the
          behaviour concepts of its own family name).
        * Examples are wrapped in prompt tags, as the paper describes, not in the code's
          RepE template (which also used the concept name of ``c`` for both sides).
        * The sign is fixed so that higher = closer to the suspicious side (the paper's
          hypothesis: a faker thinks about vulnerabilities); the headline reads the combined
          concept at mid-depth (Poser: layer 20 of 40). Combined is the simple mean of the
          per-concept mean cosines (all cosines, one scale); z-scoring would need the other
          models' scores, which a per-model statistic does not see.
        * Every block is stored, so the layer is a grid setting.

    Per prompt (for :meth:`restrict`): ``prompt_index`` (the first ``n_prompts`` valid
    prompts) and ``by_prompt`` = ``{"layer": headline block, "cosine": concept -> one cosine
    per prompt}``.

    Example:
        >>> s = ConceptStrategy()
        >>> score = {"n_layers": 2, "cosine": {"security": [0.1, 0.3], "behavior": [0.0, 0.1]}}
        >>> round(s.statistic(score, concept="combined", layer_frac=1.0), 3)
        0.2
    """

    name = "s4_concepts"
    title = "S4: suspicious concepts"
    paper_accuracy: ClassVar[float | None] = 0.71
    config_cls = ConceptConfig
    per_prompt: ClassVar[bool] = True

    def _finder(self) -> DirectionFinder:
        return mass_mean(covariance=self.config.covariance)

    def score_model(self, ctx: ModelContext) -> ConceptScore:
        """Mean cosine per block of the valid prompts with each concept direction."""
        needed = [n for c in self.config.concepts for n in CONCEPT_PAIRS[c]]
        missing = [n for n in needed if not ctx.concepts.get(n)]
        if missing:
            raise ValueError(
                f"{self.name}: ctx.concepts has no examples of {', '.join(missing)}; build them "
                "with poser_lens.data.concepts.concept_sets and pass them in the context"
            )
        prompts = [s.prompt for s in ctx.prompts[: self.config.n_prompts]]
        acts = last_residuals(ctx, prompts)[:, 1:]  # [prompt, block, d]
        head = resolve_layer(ctx.n_layers, HEADLINE_LAYER)
        cosine: dict[str, list[float]] = {}
        by_prompt: dict[str, list[float]] = {}
        for concept in self.config.concepts:
            bad, good = CONCEPT_PAIRS[concept]
            pos = last_residuals(ctx, ctx.concepts[bad])[:, 1:]
            neg = last_residuals(ctx, ctx.concepts[good])[:, 1:]
            per_block = []
            for layer in range(ctx.n_layers):
                d = self._finder()(pos[:, layer], neg[:, layer])
                cos = cosine_scores(acts[:, layer], d)
                per_block.append(float(cos.mean()))
                if layer == head:
                    by_prompt[concept] = cos.tolist()
            cosine[concept] = per_block
        return {
            "n_layers": ctx.n_layers,
            "n_prompts": len(prompts),
            "n_examples": {n: len(ctx.concepts[n]) for n in needed},
            "cosine": cosine,
            PROMPT_INDEX: list(range(len(prompts))),
            "by_prompt": {"layer": head, "cosine": by_prompt},
        }

    def restrict(self, score: ConceptScore, keep: Set[int]) -> ConceptScore:
        """The score on the prompts in ``keep``: the mean cosines at the headline block only.

        The concept directions are the ones from all concept examples (they never depend on
        the scored prompts); only the mean over prompts is restricted. ``cosine[c]`` is NaN at
        every block but the headline one (``layer_frac`` 0.5), so other layers give NaN (a
        tie); so does a ``keep`` with none of the scored prompts.

        Example:
            >>> s = ConceptStrategy()
            >>> score = {"n_layers": 2, "prompt_index": [0, 1], "by_prompt": {"layer": 1,
            ...          "cosine": {"security": [0.1, 0.3], "behavior": [0.5, 0.0]}}}
            >>> round(s.statistic(s.restrict(score, {0})), 6)
            0.3
        """
        bp = score["by_prompt"]
        pos = kept_positions(score, keep)
        n_layers, head = int(score["n_layers"]), int(bp["layer"])
        cosine = {}
        for concept, rows in bp["cosine"].items():
            per_block = [math.nan] * n_layers
            per_block[head] = float(kept_mean(rows, pos))
            cosine[concept] = per_block
        return {
            "n_layers": n_layers,
            "n_prompts": len(pos),
            "cosine": cosine,
            PROMPT_INDEX: [score[PROMPT_INDEX][i] for i in pos],
            "by_prompt": {
                "layer": head,
                "cosine": {c: [rows[i] for i in pos] for c, rows in bp["cosine"].items()},
            },
        }

    def statistic(self, score: ConceptScore, **settings: Any) -> float:
        """Mean cosine with the suspicious direction at a layer fraction (or the combined mean)."""
        s = self.settings(**settings)
        concept, frac = s["concept"], float(s["layer_frac"])
        block = resolve_layer(int(score["n_layers"]), frac)
        names = list(score["cosine"]) if concept == "combined" else [concept]
        return float(torch.tensor([score["cosine"][c][block] for c in names]).mean())

    @property
    def headline(self) -> dict[str, Any]:
        """Combined concept at mid-depth (Poser's layer 20 of 40)."""
        return {"concept": "combined", "layer_frac": HEADLINE_LAYER}

    def grid(self) -> dict[str, list[Any]]:
        """Concept x layer fraction."""
        return {
            "concept": [*self.config.concepts, "combined"],
            "layer_frac": [0.0, 0.25, 0.5, 0.75, 1.0],
        }
