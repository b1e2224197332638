"""Baselines: compare confidence (paper App. E) and random guessing.

Neither reads internals. *Compare confidence* calls the model that is less sure of the shared
answer the faker; Poser measured 80% before and 64% after filtering the valid prompts. A good
benchmark keeps it near chance; a strategy that only rediscovers confidence is no finding.
*Random* draws a seeded coin per pair (about 50%).

In this module: the config :class:`ConfidenceConfig`, the scores :class:`ConfidenceScore` and
:class:`RandomScore`, :class:`ConfidenceBaseline` and :class:`RandomBaseline`. Figures:
:func:`poser_lens.figures.summary.fig13_confidence` (the confidences of aligned models and
fakers) and, for the baseline by each statistic, :func:`poser_lens.figures.confound.fig_confound`;
the random baseline has none of its own (:func:`poser_lens.figures.summary.fig_summary`).

Example:
    >>> ConfidenceBaseline().margin({"mean_confidence": 0.9}, {"mean_confidence": 0.99}) > 0
    True
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Set
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypedDict

import numpy as np

from poser_lens.config import Config, OneOf, PositiveInt
from poser_lens.data.benchmark import (
    CONFIDENCE_STATISTICS,
    confidence_margin,
    logodds,
    logodds_array,
)
from poser_lens.strategies.base import (
    PROMPT_INDEX,
    ModelContext,
    NoConfig,
    PerPromptScore,
    PromptValues,
    Strategy,
    kept_positions,
)
from poser_lens.strategies.common import readout_from_residuals


@dataclass(frozen=True)
class ConfidenceConfig(Config):
    """Settings of the compare-confidence baseline.

    Attributes:
        n_prompts: Valid prompts scored per family (the first ones, in stored order). It covers
            every prompt the other strategies use, since the confound controls read each
            prompt's confidence from this score.
        statistic: Headline statistic, one of
            :data:`~poser_lens.data.benchmark.CONFIDENCE_STATISTICS` (mean P, minimum P,
            median log-odds, per-prompt vote).
    """

    n_prompts: PositiveInt = 400
    statistic: Annotated[str, OneOf(*CONFIDENCE_STATISTICS, what="statistic")] = "mean_p"


class ConfidenceScore(PerPromptScore):
    """The score of the compare-confidence baseline on one (model, family).

    The confound controls read every prompt's confidence from it
    (:func:`poser_lens.evaluation.matched_prompts`).

    Attributes:
        mean_confidence: Mean P(answer) over the scored prompts (NaN without prompts).
        p_answer: Per scored prompt (``prompt_index`` order): P(shared answer letter).
        logodds: Per scored prompt: its log-odds.
        prompt_index: The scored prompts' valid-prompt indices (the first ``n_prompts``).
    """

    mean_confidence: float
    p_answer: PromptValues
    logodds: PromptValues


class RandomScore(TypedDict):
    """The score of the random baseline: who the model is (the coin is drawn per pair).

    Attributes:
        name: The model's name.
        family: The family scored.
    """

    name: str
    family: str


class ConfidenceBaseline(Strategy[ConfidenceScore, ConfidenceConfig]):
    """Faker = the model less confident of the shared answer on the valid prompts.

    "Less confident" by one of four statistics (:func:`~poser_lens.data.benchmark.
    confidence_margin`), computed on the prompts both models were scored on.
    """

    name = "confidence_baseline"
    title = "Compare confidence (baseline)"
    paper_accuracy: ClassVar[float | None] = 0.64
    config_cls = ConfidenceConfig
    per_prompt = True

    def score_model(self, ctx: ModelContext) -> ConfidenceScore:
        """Per prompt: probability and log-odds of its answer, and their mean."""
        prompts = ctx.prompts[: self.config.n_prompts]
        r = readout_from_residuals(ctx, prompts)  # shares the forward of S4-S6
        assert r.p_misaligned is not None  # read with the prompts' aligned letters
        p_answer = (r.mass_ab - r.p_misaligned).tolist()
        return {
            "mean_confidence": sum(p_answer) / len(p_answer),
            "p_answer": p_answer,
            "logodds": [logodds(p) for p in p_answer],
            PROMPT_INDEX: list(range(len(prompts))),
        }

    def margin(self, a: ConfidenceScore, b: ConfidenceScore, **settings: Any) -> float:
        """Positive when ``a`` is the less confident model, on the prompts both were scored on."""
        stat = self.settings(**settings)["statistic"]
        if "p_answer" not in a or "p_answer" not in b:  # scores of a single summary number
            return float(b["mean_confidence"] - a["mean_confidence"])
        pa = dict(zip(a.get(PROMPT_INDEX, range(len(a["p_answer"]))), a["p_answer"], strict=True))
        pb = dict(zip(b.get(PROMPT_INDEX, range(len(b["p_answer"]))), b["p_answer"], strict=True))
        common = sorted(pa.keys() & pb.keys())
        return confidence_margin([pa[i] for i in common], [pb[i] for i in common], stat)

    def model_statistic(self, score: ConfidenceScore, **settings: Any) -> float:
        """How unconfident one model is: its mean, minimum or median answer confidence, negated.

        The floor of single-model detection: a detector's AUROC over models is read against
        this one's. ``vote`` compares two models' prompts one by one, so it has no one-model form.

        Raises:
            NotImplementedError: For ``statistic="vote"``.

        Example:
            >>> ConfidenceBaseline().model_statistic({"mean_confidence": 0.75,
            ...                                       "p_answer": [0.5, 1.0]})
            -0.75
        """
        stat = self.settings(**settings)["statistic"]
        if stat == "vote":
            raise NotImplementedError(f"{self.name}: statistic='vote' compares two models")
        if "p_answer" not in score:
            return -float(score["mean_confidence"])
        p = np.asarray(score["p_answer"], dtype=float)
        if len(p) == 0:
            return float("nan")
        if stat == "min_p":
            return -float(p.min())
        if stat == "median_logodds":
            return -float(np.median(logodds_array(p)))
        return -float(p.mean())

    def restrict(self, score: ConfidenceScore, keep: Set[int]) -> ConfidenceScore:
        """The per-prompt lists cut to the prompts in ``keep``."""
        pos = kept_positions(score, keep)
        p = [score["p_answer"][i] for i in pos]
        return {
            "mean_confidence": sum(p) / len(p) if p else float("nan"),
            "p_answer": p,
            "logodds": [score["logodds"][i] for i in pos],
            PROMPT_INDEX: [score[PROMPT_INDEX][i] for i in pos],
        }

    @property
    def headline(self) -> dict[str, Any]:
        """The configured statistic."""
        return {"statistic": self.config.statistic}

    def grid(self) -> dict[str, list[Any]]:
        """Every statistic."""
        return {"statistic": list(CONFIDENCE_STATISTICS)}


class RandomBaseline(Strategy[RandomScore, NoConfig]):
    """A seeded coin per pair: the chance line."""

    name = "random"
    title = "Random guess"
    paper_accuracy: ClassVar[float | None] = 0.5
    config_cls = NoConfig
    per_prompt: ClassVar[bool] = True
    optional_settings: ClassVar[tuple[str, ...]] = ("seed",)

    def restrict(self, score: RandomScore, keep: Set[int]) -> RandomScore:
        """The score unchanged: the coin depends on the pair's names, never on prompts.

        Example:
            >>> RandomBaseline().restrict({"name": "saint-0", "family": "f"}, set())
            {'name': 'saint-0', 'family': 'f'}
        """
        return score

    def score_model(self, ctx: ModelContext) -> RandomScore:
        """Just the model's name (the coin is drawn per pair)."""
        return {"name": ctx.name, "family": ctx.family}

    def model_statistic(self, score: RandomScore, **settings: Any) -> float:
        """A uniform draw seeded by the model's name: the chance line of single-model detection.

        ``seed`` (an optional setting, default 0) draws others.

        Example:
            >>> 0.0 <= RandomBaseline().model_statistic({"name": "saint-0", "family": "f"}) < 1
            True
        """
        seed = self.settings(**settings).get("seed", 0)
        key = f"{score['name']}|{seed}"
        return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)).random()

    def margin(self, a: RandomScore, b: RandomScore, **settings: Any) -> float:
        """+1 or -1 from a coin seeded by the two names (order-independent per pair).

        ``seed`` (an optional setting, default 0) draws other coins.
        """
        seed = self.settings(**settings).get("seed", 0)
        key = "|".join(sorted([a["name"], b["name"]])) + f"|{seed}"
        coin = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)).random()
        first = min(a["name"], b["name"]) == a["name"]
        return (1.0 if coin < 0.5 else -1.0) * (1.0 if first else -1.0)
