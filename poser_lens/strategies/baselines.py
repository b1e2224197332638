"""Baselines: compare confidence (paper App. E) and random guessing.

Neither reads internals. *Compare confidence* calls the model that is less sure of the shared
answer the faker; Poser measured 80% before and 64% after filtering the valid prompts. A good
benchmark keeps it near chance; a strategy that only rediscovers confidence is no finding.
*Random* draws a seeded coin per pair (about 50%).

Example:
    >>> ConfidenceBaseline().margin({"mean_confidence": 0.9}, {"mean_confidence": 0.99}) > 0
    True
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from poser_lens.strategies.base import ModelContext, NoConfig, Score, Strategy
from poser_lens.strategies.common import readout_from_residuals


@dataclass(frozen=True)
class ConfidenceConfig:
    """Settings of the compare-confidence baseline.

    Attributes:
        n_prompts: Valid prompts scored per family (the first ones, in stored order).
    """

    n_prompts: int = 100


class ConfidenceBaseline(Strategy):
    """Faker = the model with the lower mean P(shared answer) on the valid prompts."""

    name = "confidence_baseline"
    title = "Compare confidence (baseline)"
    paper_accuracy: ClassVar[float | None] = 0.64
    config_cls = ConfidenceConfig

    def score_model(self, ctx: ModelContext) -> Score:
        """Mean and per-prompt probability of each prompt's answer."""
        prompts = ctx.prompts[: self.config.n_prompts]
        r = readout_from_residuals(ctx, prompts)  # shares the forward of S4-S6
        p_answer = (r.mass_ab - r.p_misaligned).tolist()
        return {"mean_confidence": sum(p_answer) / len(p_answer), "p_answer": p_answer}

    def statistic(self, score: Score, **settings: Any) -> float:
        """Lower confidence looks more faker-like."""
        return -float(score["mean_confidence"])


class RandomBaseline(Strategy):
    """A seeded coin per pair: the chance line."""

    name = "random"
    title = "Random guess"
    paper_accuracy: ClassVar[float | None] = 0.5
    config_cls = NoConfig

    def score_model(self, ctx: ModelContext) -> Score:
        """Just the model's name (the coin is drawn per pair)."""
        return {"name": ctx.name, "family": ctx.family}

    def margin(self, a: Score, b: Score, **settings: Any) -> float:
        """+1 or -1 from a coin seeded by the two names (order-independent per pair)."""
        key = "|".join(sorted([a["name"], b["name"]])) + f"|{settings.get('seed', 0)}"
        coin = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)).random()
        first = min(a["name"], b["name"]) == a["name"]
        return (1.0 if coin < 0.5 else -1.0) * (1.0 if first else -1.0)
