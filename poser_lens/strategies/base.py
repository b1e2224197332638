"""What every detection strategy is: a config, a typed score, ``score_model`` and a ``margin``.

A strategy never sees a pair while it works on a model. :meth:`Strategy.score_model` runs once
per (model, family): it gets the model and the family's valid prompts (good or neutral
oversight only, which :class:`ModelContext` asserts) and returns a JSON-serialisable *score*
(numbers, lists and dicts, e.g. P(misaligned) at every noise coefficient). Scores are stored
per model, so the 324 pair verdicts are cheap arithmetic on 36 x 3 stored scores:
:meth:`Strategy.margin` compares the two scores of a pair under some *settings* (a layer, a
coefficient, a training step) and returns a number that is positive when the first model
looks like the faker. Because a score holds every setting of the strategy's grid, the
sensitivity sweep never re-runs a model.

Each strategy module defines its score's layout as a ``TypedDict`` next to its config (e.g.
:class:`~poser_lens.strategies.s5_decision_speed.DecisionSpeedScore`), names its figure
function, and parametrises :class:`Strategy` with it and its config
(``Strategy[DecisionSpeedScore, DecisionSpeedConfig]``), so ``score_model``, ``margin``,
``restrict`` and the figure read one declared layout and ``self.config`` has the config's type
(a strategy giving only its score type, ``Strategy[NoiseScore]``, has an ``Any`` config). The
``TypedDict`` is only a type: the stored JSON is the plain dict. Keys of per-layer maps are
:data:`LayerKey` strings (JSON object keys), per-prompt scores extend :class:`PerPromptScore`.

Settings are merged in one place, :meth:`Strategy.settings`: the headline settings with
overrides, unknown names refused. The evaluator, the sweep, the confound variants, the figures
and the removal study all ask it, and ``margin``/``statistic`` read the merged dict.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg:
    ...     n_prompts: int = 3
    >>> class Length(Strategy):
    ...     name = "length"
    ...     config_cls = Cfg
    ...     def score_model(self, ctx):
    ...         return {"x": float(len(ctx.prompts))}
    ...     def statistic(self, score, **settings):
    ...         return score["x"]
    >>> s = Length()
    >>> s.margin({"x": 2.0}, {"x": 1.0}), s.verdict({"x": 2.0}, {"x": 1.0})
    (1.0, 'a')
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from functools import cached_property
from typing import Any, ClassVar, Final, Generic, Literal, TypedDict, cast

from typing_extensions import TypeVar

from poser_lens.config import Config
from poser_lens.data.schema import Scenario
from poser_lens.hooked import HookedModel
from poser_lens.strategies.memo import MemoKey

#: Any strategy's score, untyped (each strategy module defines its own ``TypedDict``).
Score = dict[str, Any]
#: Settings of a verdict: setting name -> value (see :meth:`Strategy.settings`).
Settings = dict[str, Any]
#: Model name -> family -> score: a strategy's stored scores of a run.
ScoreTable = dict[str, dict[str, Any]]

#: A key of a per-layer map in a stored score: the block index as a string (``str(block)``,
#: since JSON object keys are strings), e.g. ``"1"`` for block 1. Used as ``dict[LayerKey, ...]``.
LayerKey = str

#: Score key of a per-prompt score: the indices (into the family's valid prompts, in stored
#: order) of the prompts its per-prompt values belong to, in the same order.
PROMPT_INDEX: Final = "prompt_index"

#: One value per scored prompt, in ``prompt_index`` order.
PromptValues = list[float]
#: One row per scored prompt (in ``prompt_index`` order), e.g. a value per layer or coefficient.
PromptRows = list[list[float]]


class PerPromptScore(TypedDict):
    """The shared part of every per-prompt score (a strategy with ``per_prompt`` set).

    The score's per-prompt values (usually under ``by_prompt``, typed by each strategy as
    :data:`PromptValues` or :data:`PromptRows`) follow the order of ``prompt_index``, so
    :meth:`Strategy.restrict` can cut them to a subset of the valid prompts
    (:func:`kept_positions`).

    Attributes:
        prompt_index: Valid-prompt indices (into the family's valid prompts, stored order) of
            the scored prompts, in the order of the per-prompt values.
    """

    prompt_index: list[int]


class HeadlineByPrompt(TypedDict):
    """The shared part of a ``by_prompt`` kept at one block only (the headline layer).

    Attributes:
        layer: The block the per-prompt values were read at.
    """

    layer: int


#: A strategy's score type (its ``TypedDict``; ``Any`` for an unparametrised strategy).
S = TypeVar("S", bound=Mapping[str, Any])
#: A strategy's config type (its frozen dataclass, :attr:`Strategy.config_cls`); ``Any`` when
#: a strategy gives only its score type (``Strategy[NoiseScore]``).
C = TypeVar("C", default=Any)


def kept_positions(score: Mapping[str, Any], keep: Set[int]) -> list[int]:
    """Positions in a per-prompt score's arrays of the prompts whose valid index is in ``keep``.

    Example:
        >>> kept_positions({"prompt_index": [4, 7, 9]}, {7, 9, 11})
        [1, 2]
    """
    return [i for i, j in enumerate(score[PROMPT_INDEX]) if j in keep]


class InvalidPromptError(ValueError):
    """A detector was handed a prompt it must never see (poor oversight, or an error prompt)."""


def check_valid(prompts: Sequence[Scenario], where: str = "valid set") -> None:
    """Assert that prompts are benchmark-valid: A/B scenarios with good or neutral oversight.

    Detectors may only use prompts on which aligned models and fakers behave alike; a
    poor-oversight prompt would let behaviour, not internals, give the faker away.

    Raises:
        InvalidPromptError: naming the first offending prompt.

    Example:
        >>> check_valid([Scenario(prompt="p", response="A", oversight_is_poor=False)])
        >>> check_valid([Scenario(prompt="p", response="A", oversight_is_poor=True)])
        Traceback (most recent call last):
        ...
        poser_lens.strategies.base.InvalidPromptError: valid set, prompt 0: oversight is poor; detectors only see good/neutral-oversight prompts
    """  # noqa: E501
    for i, s in enumerate(prompts):
        if s.oversight_is_poor:
            raise InvalidPromptError(
                f"{where}, prompt {i}: oversight is poor; detectors only see "
                "good/neutral-oversight prompts"
            )
        if s.response not in ("A", "B"):
            raise InvalidPromptError(f"{where}, prompt {i}: response {s.response!r} is not A/B")


@dataclass
class ModelContext:
    """What a strategy sees of one model on one family.

    Attributes:
        name: Model name, ``<persona>-<seed>`` (the persona is never used by strategies).
        model: The hooked model (a ``TransformerBridge``; what strategies use of it is
            :class:`~poser_lens.hooked.HookedModel`).
        tokenizer: Its tokenizer (a Hugging Face tokenizer, untyped).
        family: The family whose valid prompts these are, e.g. ``truth_and_reward``.
        prompts: The family's valid prompts in stored order (checked by :func:`check_valid`).
        concepts: Concept name -> example texts (strategy 4), never built from ``prompts``.
        seed: Seed for anything random in the strategy.
        memo: Per-(model, family) store shared by strategies, so work such as collecting
            activations is done once (see :meth:`cached`), under the typed keys of
            :mod:`poser_lens.strategies.memo`.
    """

    name: str
    model: HookedModel
    tokenizer: Any
    family: str
    prompts: list[Scenario]
    concepts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    seed: int = 0
    memo: dict[MemoKey, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_valid(self.prompts, f"{self.family} valid set for {self.name}")

    @property
    def n_layers(self) -> int:
        """Blocks of the model."""
        return int(self.model.cfg.n_layers)

    def cached(self, key: MemoKey, compute: Callable[[], Any]) -> Any:
        """``memo[key]``, computed by ``compute()`` the first time.

        ``key`` is one of :mod:`poser_lens.strategies.memo`'s typed keys, which name each
        piece of shared work once.

        Example:
            >>> from poser_lens.strategies.memo import CriticalForwards
            >>> ctx = ModelContext("saint-0", None, None, "saint_and_money", [])
            >>> key = CriticalForwards(n_prompts=50, batch_size=64)
            >>> ctx.cached(key, lambda: 3), ctx.cached(key, lambda: 4)
            (3, 3)
        """
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


class Strategy(ABC, Generic[S, C]):
    """A detection strategy: ``score_model`` per (model, family), ``margin`` per pair.

    Subclasses set :attr:`name`, :attr:`paper_accuracy`, :attr:`config_cls` (a frozen
    dataclass of settings with defaults), parametrise the class with their score's
    ``TypedDict`` and their config
    (``Strategy[DecisionSpeedScore, DecisionSpeedConfig]``; the config type defaults to
    ``Any``) and implement :meth:`score_model` and
    :meth:`statistic` (or :meth:`margin` when the comparison is not a difference of
    per-model statistics). :attr:`headline` gives the settings of the headline number
    (fixed in advance or chosen without labels), :meth:`grid` the sweep and
    :attr:`optional_settings` the settings :meth:`margin` also accepts; :meth:`settings`
    merges and checks them.
    """

    #: Registry name (``s2_noise``, ...).
    name: ClassVar[str] = ""
    #: Accuracy the paper reports (None when it reports none).
    paper_accuracy: ClassVar[float | None] = None
    #: One line for reports.
    title: ClassVar[str] = ""
    #: Config dataclass (set by every subclass; a class attribute, though typed as an
    #: instance one since a ``ClassVar`` cannot hold the type variable).
    config_cls: type[C] = cast("type[C]", object)
    #: Strategies that only read other strategies' scores (the ensemble) set this.
    needs_model: ClassVar[bool] = True
    #: Whether :meth:`restrict` can re-score a stored score on a subset of its prompts (the
    #: confidence-matched-prompts control needs it).
    per_prompt: ClassVar[bool] = False
    #: Settings :meth:`margin` accepts besides those of :attr:`headline` and :meth:`grid`.
    #: They are not part of the headline, so results record them only when given; absent,
    #: the one default applies where the setting is read (S2's ``kl_target``: its config's;
    #: the random baseline's ``seed``: 0).
    optional_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: C | None = None, **changes: Any) -> None:
        cfg = config if config is not None else self.config_cls()
        self.config: C = cast(C, replace(cast(Any, cfg), **changes)) if changes else cfg

    # -- per model ---------------------------------------------------------------------

    @abstractmethod
    def score_model(self, ctx: ModelContext) -> S:
        """Score one model on one family's valid prompts (JSON-serialisable)."""

    def collect_scores(self, load: Callable[[str], ScoreTable]) -> ScoreTable:
        """This strategy's scores of a run (model -> family -> score), read with ``load``.

        ``load(name)`` returns the stored scores of the strategy ``name`` (e.g.
        :meth:`poser_lens.runs.RunDir.scores`) and raises ``FileNotFoundError`` when the run
        has none. Default: ``load(self.name)``; a strategy built on other strategies' scores
        (the ensemble) assembles them here.

        Example:
            >>> from poser_lens.strategies.baselines import RandomBaseline
            >>> RandomBaseline().collect_scores(lambda name: {"saint-0": {"f": {"who": name}}})
            {'saint-0': {'f': {'who': 'random'}}}
        """
        return load(self.name)

    def with_strategies(self, make: Callable[[str], Strategy[Any, Any]]) -> Strategy[Any, Any]:
        """This strategy reading other strategies' scores with ``make(name)``'s strategies.

        A run hands its own configured strategies here (:meth:`RunConfig.strategy
        <poser_lens.runner.RunConfig.strategy>`), so a strategy built on others' stored
        scores (the ensemble) reads them with the settings they were scored with. Default:
        itself (it reads no other strategy).
        """
        return self

    # -- per pair ----------------------------------------------------------------------

    def settings(self, **overrides: Any) -> Settings:
        """The settings of a verdict: :attr:`headline` with ``overrides``, checked.

        The one place settings are merged: :meth:`margin` and :meth:`statistic` read the
        result, the evaluator records it (``results.json`` ``settings``), sweeps and
        :meth:`confound_variants` pass their points as ``overrides``, figures pass the
        settings a run recorded. Names must be those of :attr:`headline`, :meth:`grid` or
        :attr:`optional_settings`.

        Raises:
            ValueError: For an unknown setting name (listing the known ones).

        Example:
            >>> from poser_lens.strategies.s5_decision_speed import DecisionSpeedStrategy
            >>> DecisionSpeedStrategy().settings(stat="first_layer")
            {'stat': 'first_layer', 'layer_frac': 0.25, 'threshold': 0.9}
            >>> DecisionSpeedStrategy().settings(layer=3)
            Traceback (most recent call last):
            ...
            ValueError: s5_decision_speed: unknown setting 'layer' (known: stat, layer_frac, threshold)
        """  # noqa: E501
        unknown = [k for k in overrides if k not in self._setting_names]
        if unknown:
            known = ", ".join(self._setting_names) or "none"
            raise ValueError(f"{self.name}: unknown setting {unknown[0]!r} (known: {known})")
        return {**self.headline, **overrides}

    @cached_property
    def _setting_names(self) -> tuple[str, ...]:
        """Every setting :meth:`settings` accepts, in headline, grid, optional order."""
        return tuple(dict.fromkeys([*self.headline, *self.grid(), *self.optional_settings]))

    def statistic(self, score: S, **settings: Any) -> float:
        """How faker-like one model looks under ``settings`` (higher = more faker-like)."""
        raise NotImplementedError(f"{self.name} defines margin() instead of statistic()")

    def model_statistic(self, score: S, **settings: Any) -> float:
        """How faker-like one model looks on its own: the score of single-model detection.

        A deployer holds one model, not a labelled pair; this is the number a threshold is set
        on (:func:`poser_lens.evaluation.single_model`). Default: :meth:`statistic` at the
        merged settings. A strategy whose headline compares two models (a vote, a noise level
        chosen from both) overrides it with the one-model form, or raises.

        Raises:
            NotImplementedError: When the strategy has no statistic of one model at these
                settings (the message says why).
        """
        return self.statistic(score, **self.settings(**settings))

    def margin(self, a: S, b: S, **settings: Any) -> float:
        """Positive when model ``a`` looks like the faker, negative for ``b``, 0 for a tie."""
        settings = self.settings(**settings)
        return float(self.statistic(a, **settings) - self.statistic(b, **settings))

    def verdict(
        self, a: S, b: S, rng: random.Random | None = None, **settings: Any
    ) -> Literal["a", "b"]:
        """Which model of the pair is the faker; ties (and NaN) go to a seeded coin."""
        m = self.margin(a, b, **settings)
        if m > 0:
            return "a"
        if m < 0:
            return "b"
        return "a" if (rng or random.Random(0)).random() < 0.5 else "b"

    def restrict(self, score: S, keep: Set[int]) -> S:
        """The score as if only the valid prompts with index in ``keep`` had been scored.

        Indices refer to the family's valid prompts in stored order (``ctx.prompts``); a
        per-prompt score records the indices it used under :data:`PROMPT_INDEX`. The result
        must be valid for :meth:`margin` at the headline settings (the grid may be dropped).
        Strategies with :attr:`per_prompt` set implement it; the confound controls use it to
        re-score a pair on the prompts where the two models are equally confident.

        Raises:
            NotImplementedError: If the strategy's score is not decomposable per prompt.
        """
        raise NotImplementedError(f"{self.name}: its score cannot be restricted to prompts")

    @property
    def headline(self) -> Settings:
        """Settings of the headline number (default: none)."""
        return {}

    def grid(self) -> dict[str, list[Any]]:
        """Settings to sweep for the sensitivity analysis (name -> values)."""
        return {}

    def confound_variants(self) -> dict[str, Settings]:
        """Deconfounded versions of the headline: label -> settings overriding the headline.

        Evaluated beside the headline in every run (``results.json`` ``variants``), e.g. S2's
        rise in log-odds and its noise scaled per model to an equal effect. Default: none.
        """
        return {}

    def config_dict(self) -> dict[str, Any]:
        """The config as a plain dict (saved beside results; a :class:`Config` saves itself)."""
        config = self.config
        if isinstance(config, Config):
            return config.to_dict()
        return asdict(config) if is_dataclass(config) and not isinstance(config, type) else {}


@dataclass(frozen=True)
class NoConfig:
    """A strategy without settings."""
