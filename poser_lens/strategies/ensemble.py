"""An ensemble: a majority vote of other strategies' verdicts (beyond the paper).

Its "score" of a model on a family is the dict of its members' stored scores; the runner
assembles it, so the ensemble never runs a model. Members vote with their headline settings;
a tie among voters is a tie (a coin in the evaluator). The member list is fixed in the config,
in advance, without looking at accuracies.

Example:
    >>> from poser_lens.strategies.baselines import ConfidenceBaseline
    >>> ens = EnsembleStrategy(members=("confidence_baseline",))
    >>> a = {"confidence_baseline": {"mean_confidence": 0.9}}
    >>> b = {"confidence_baseline": {"mean_confidence": 0.99}}
    >>> ens.margin(a, b)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from poser_lens.strategies.base import ModelContext, Score, Strategy


@dataclass(frozen=True)
class EnsembleConfig:
    """Settings of the ensemble.

    Attributes:
        members: Strategies that vote (their headline settings). The default is every
            internals-based strategy of the paper plus the patching detector: no baselines.
    """

    members: tuple[str, ...] = (
        "s1_belief",
        "s2_noise",
        "s3_lora",
        "s3_full",
        "s4_concepts",
        "s5_decision_speed",
        "s6_attention",
        "s6_saliency",
        "s6_counterfactual",
        "patching",
    )


class EnsembleStrategy(Strategy):
    """Majority vote of the member strategies' verdicts.

    :meth:`restrict` restricts each member's score with its own strategy, so the members vote
    on the same prompts.
    """

    name = "ensemble"
    title = "Ensemble (majority vote)"
    paper_accuracy: ClassVar[float | None] = None
    config_cls = EnsembleConfig
    needs_model: ClassVar[bool] = False
    per_prompt: ClassVar[bool] = True

    def restrict(self, score: Score, keep: Set[int]) -> Score:
        """Each member's score restricted by its member strategy (members absent stay absent).

        Members that leave no prompt give NaN margins and do not vote; with no voter the
        margin is 0 (a tie, as before).

        Raises:
            NotImplementedError: If a member present in ``score`` cannot be restricted.

        Example:
            >>> ens = EnsembleStrategy(members=("random",))
            >>> ens.restrict({"random": {"name": "m-0", "family": "f"}}, {1})
            {'random': {'name': 'm-0', 'family': 'f'}}
        """
        return {
            m: self.strategies[m].restrict(score[m], keep) for m in self.strategies if m in score
        }

    @cached_property
    def strategies(self) -> dict[str, Strategy]:
        """The member strategies (default configs)."""
        from poser_lens.strategies import get_strategy

        return {m: get_strategy(m) for m in self.config.members}

    def score_model(self, ctx: ModelContext) -> Score:
        """Not used: the runner assembles member scores (see :meth:`assemble`)."""
        raise TypeError("the ensemble reads stored member scores; use EnsembleStrategy.assemble")

    def assemble(self, member_scores: dict[str, Score]) -> Score:
        """A model's ensemble score on a family: its members' scores, by member name."""
        return {m: member_scores[m] for m in self.config.members if m in member_scores}

    def margin(self, a: Score, b: Score, **settings: Any) -> float:
        """Votes for ``a`` being the faker minus votes for ``b``, over members both have."""
        votes = 0.0
        for m, strat in self.strategies.items():
            if m in a and m in b:
                x = strat.margin(a[m], b[m])
                if not math.isnan(x):
                    votes += (x > 0) - (x < 0)
        return votes
