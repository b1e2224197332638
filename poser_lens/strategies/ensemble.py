"""An ensemble: a majority vote of other strategies' verdicts (beyond the paper).

Its "score" of a model on a family (:data:`EnsembleScore`) is the dict of its members' stored
scores; :meth:`EnsembleStrategy.collect_scores` assembles them from a run, so the ensemble
never runs a model. Members vote with their headline settings; a tie among voters is a tie (a
coin in the evaluator). The member list is fixed in the config, in advance, without looking at
accuracies.

In this module: the config :class:`EnsembleConfig`, the score :data:`EnsembleScore` and
:class:`EnsembleStrategy`. Figure: none of its own;
:func:`poser_lens.figures.summary.fig_summary` and
:func:`poser_lens.figures.confound.fig_confound` show its accuracy.

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
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar

from poser_lens.config import Config, NonEmpty
from poser_lens.strategies import StrategyName, get_strategy
from poser_lens.strategies.base import ModelContext, ScoreTable, Strategy

#: The ensemble's score of a model on a family: member name -> that member's score (its own
#: typed score, e.g. :class:`~poser_lens.strategies.s2_noise.NoiseScore`); members without a
#: stored score are absent.
EnsembleScore = dict[str, Mapping[str, Any]]


@dataclass(frozen=True)
class EnsembleConfig(Config):
    """Settings of the ensemble.

    Attributes:
        members: Strategies that vote (their headline settings). The default is every
            internals-based strategy of the paper plus the patching detector: no baselines.
    """

    members: Annotated[tuple[StrategyName, ...], NonEmpty()] = (
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


class EnsembleStrategy(Strategy[EnsembleScore, EnsembleConfig]):
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

    def restrict(self, score: EnsembleScore, keep: Set[int]) -> EnsembleScore:
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
        """The member strategies (default configs, unless built by :meth:`with_strategies`)."""
        return {m: get_strategy(m) for m in self.config.members}

    def with_strategies(self, make: Callable[[str], Strategy]) -> EnsembleStrategy:
        """The ensemble whose members are ``make(name)`` (a run's configured strategies).

        Members vote with the headline settings they were scored with: a run that changes a
        member's grid (e.g. S1's coefficients) changes its headline too.

        Example:
            >>> ens = EnsembleStrategy(members=("s1_belief",))
            >>> custom = ens.with_strategies(lambda m: get_strategy(m, headline_coeff=4.0))
            >>> custom.strategies["s1_belief"].config.headline_coeff
            4.0
        """
        ens = EnsembleStrategy(self.config)
        ens.__dict__["strategies"] = {m: make(m) for m in self.config.members}
        return ens

    def score_model(self, ctx: ModelContext) -> EnsembleScore:
        """Not used: the ensemble reads stored member scores (see :meth:`collect_scores`)."""
        raise TypeError("the ensemble reads stored member scores; use collect_scores")

    def assemble(self, member_scores: Mapping[str, Mapping[str, Any]]) -> EnsembleScore:
        """A model's ensemble score on a family: its members' scores, by member name."""
        return {m: member_scores[m] for m in self.config.members if m in member_scores}

    def collect_scores(self, load: Callable[[str], ScoreTable]) -> ScoreTable:
        """Model -> family -> :data:`EnsembleScore`, from the members' stored scores.

        Members the run did not score (``load`` raises ``FileNotFoundError``) are left out.

        Example:
            >>> ens = EnsembleStrategy(members=("random", "s2_noise"))
            >>> def load(name):
            ...     if name != "random":
            ...         raise FileNotFoundError(name)
            ...     return {"saint-0": {"f": {"name": "saint-0", "family": "f"}}}
            >>> ens.collect_scores(load)
            {'saint-0': {'f': {'random': {'name': 'saint-0', 'family': 'f'}}}}
        """
        members = {}
        for m in self.config.members:
            try:
                members[m] = load(m)
            except FileNotFoundError:
                continue
        out: ScoreTable = {}
        for m, table in members.items():
            for model, fams in table.items():
                for fam, score in fams.items():
                    out.setdefault(model, {}).setdefault(fam, {})[m] = score
        return out

    def model_statistic(self, score: EnsembleScore, **settings: Any) -> float:
        """None: the ensemble is a vote of its members over a pair.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(f"{self.name}: a vote of its members over a pair")

    def margin(self, a: EnsembleScore, b: EnsembleScore, **settings: Any) -> float:
        """Votes for ``a`` being the faker minus votes for ``b``, over members both have."""
        self.settings(**settings)  # the ensemble has no settings: refuse unknown ones
        votes = 0.0
        for m, strat in self.strategies.items():
            if m in a and m in b:
                x = strat.margin(a[m], b[m])
                if not math.isnan(x):
                    votes += (x > 0) - (x < 0)
        return votes
