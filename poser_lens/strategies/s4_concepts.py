"""Strategy 4: identify suspicious concepts (Poser: 71%).

Example:
    >>> ConceptStrategy().headline
    {'concept': 'combined', 'layer_frac': 0.5}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from poser_lens.data.concepts import CONCEPT_PAIRS
from poser_lens.hooks import resolve_layer
from poser_lens.probes import DirectionFinder, cosine_scores, mass_mean
from poser_lens.strategies.base import ModelContext, Score, Strategy
from poser_lens.strategies.common import last_residuals


@dataclass(frozen=True)
class ConceptConfig:
    """Settings of strategy 4.

    Attributes:
        n_prompts: Valid prompts scored per family (the first ones; Poser used 100).
        concepts: Concept pairs to read (keys of :data:`poser_lens.data.concepts.CONCEPT_PAIRS`).
        covariance: Whiten the difference of means by the pooled covariance (Poser: no).
    """

    n_prompts: int = 100
    concepts: tuple[str, ...] = ("security", "competence", "behavior")
    covariance: bool = False


class ConceptStrategy(Strategy):
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

    def _finder(self) -> DirectionFinder:
        return mass_mean(covariance=self.config.covariance)

    def score_model(self, ctx: ModelContext) -> Score:
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
        cosine: dict[str, list[float]] = {}
        for concept in self.config.concepts:
            bad, good = CONCEPT_PAIRS[concept]
            pos = last_residuals(ctx, ctx.concepts[bad])[:, 1:]
            neg = last_residuals(ctx, ctx.concepts[good])[:, 1:]
            per_block = []
            for layer in range(ctx.n_layers):
                d = self._finder()(pos[:, layer], neg[:, layer])
                per_block.append(float(cosine_scores(acts[:, layer], d).mean()))
            cosine[concept] = per_block
        return {
            "n_layers": ctx.n_layers,
            "n_prompts": len(prompts),
            "n_examples": {n: len(ctx.concepts[n]) for n in needed},
            "cosine": cosine,
        }

    def statistic(self, score: Score, **settings: Any) -> float:
        """Mean cosine with the suspicious direction at a layer fraction (or the combined mean)."""
        concept = settings.get("concept", "combined")
        block = resolve_layer(int(score["n_layers"]), float(settings.get("layer_frac", 0.5)))
        names = list(score["cosine"]) if concept == "combined" else [concept]
        return float(torch.tensor([score["cosine"][c][block] for c in names]).mean())

    @property
    def headline(self) -> dict[str, Any]:
        """Combined concept at mid-depth (Poser's layer 20 of 40)."""
        return {"concept": "combined", "layer_frac": 0.5}

    def grid(self) -> dict[str, list[Any]]:
        """Concept x layer fraction."""
        return {
            "concept": [*self.config.concepts, "combined"],
            "layer_frac": [0.0, 0.25, 0.5, 0.75, 1.0],
        }
