"""What every detection strategy is: a config, ``score_model`` and a pair ``margin``.

A strategy never sees a pair while it works on a model. :meth:`Strategy.score_model` runs once
per (model, family): it gets the model and the family's valid prompts (good or neutral
oversight only, which :class:`ModelContext` asserts) and returns a JSON-serialisable *score*
(numbers, lists and dicts, e.g. P(misaligned) at every noise coefficient). Scores are stored
per model, so the 324 pair verdicts are cheap arithmetic on 36 x 3 stored scores:
:meth:`Strategy.margin` compares the two scores of a pair under some *settings* (a layer, a
coefficient, a training step) and returns a number that is positive when the first model
looks like the faker. Because a score holds every setting of the strategy's grid, the
sensitivity sweep never re-runs a model.

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
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, ClassVar, Literal

from poser_lens.data.schema import Scenario

Score = dict[str, Any]
Settings = dict[str, Any]

#: Score key of a per-prompt score: the indices (into the family's valid prompts, in stored
#: order) of the prompts its per-prompt values belong to, in the same order.
PROMPT_INDEX = "prompt_index"


def kept_positions(score: Score, keep: Set[int]) -> list[int]:
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
        model: The hooked model (``TransformerBridge``).
        tokenizer: Its tokenizer.
        family: The family whose valid prompts these are, e.g. ``truth_and_reward``.
        prompts: The family's valid prompts in stored order (checked by :func:`check_valid`).
        concepts: Concept name -> example texts (strategy 4), never built from ``prompts``.
        seed: Seed for anything random in the strategy.
        memo: Per-(model, family) store shared by strategies, so work such as collecting
            activations is done once (see :meth:`cached`).
    """

    name: str
    model: Any
    tokenizer: Any
    family: str
    prompts: list[Scenario]
    concepts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    seed: int = 0
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_valid(self.prompts, f"{self.family} valid set for {self.name}")

    @property
    def n_layers(self) -> int:
        """Blocks of the model."""
        return int(self.model.cfg.n_layers)

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``memo[key]``, computed by ``compute()`` the first time.

        Example:
            >>> ctx = ModelContext("saint-0", None, None, "saint_and_money", [])
            >>> ctx.cached("k", lambda: 3), ctx.cached("k", lambda: 4)
            (3, 3)
        """
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


class Strategy(ABC):
    """A detection strategy: ``score_model`` per (model, family), ``margin`` per pair.

    Subclasses set :attr:`name`, :attr:`paper_accuracy`, :attr:`config_cls` (a frozen
    dataclass of settings with defaults) and implement :meth:`score_model` and
    :meth:`statistic` (or :meth:`margin` when the comparison is not a difference of
    per-model statistics). :attr:`headline` gives the settings of the headline number
    (fixed in advance or chosen without labels) and :meth:`grid` the sweep.
    """

    #: Registry name (``s2_noise``, ...).
    name: ClassVar[str] = ""
    #: Accuracy the paper reports (None when it reports none).
    paper_accuracy: ClassVar[float | None] = None
    #: One line for reports.
    title: ClassVar[str] = ""
    #: Config dataclass.
    config_cls: ClassVar[type] = object
    #: Strategies that only read other strategies' scores (the ensemble) set this.
    needs_model: ClassVar[bool] = True
    #: Whether :meth:`restrict` can re-score a stored score on a subset of its prompts (the
    #: confidence-matched-prompts control needs it).
    per_prompt: ClassVar[bool] = False

    def __init__(self, config: Any = None, **changes: Any) -> None:
        cfg = config if config is not None else self.config_cls()
        self.config = replace(cfg, **changes) if changes else cfg

    # -- per model ---------------------------------------------------------------------

    @abstractmethod
    def score_model(self, ctx: ModelContext) -> Score:
        """Score one model on one family's valid prompts (JSON-serialisable)."""

    # -- per pair ----------------------------------------------------------------------

    def statistic(self, score: Score, **settings: Any) -> float:
        """How faker-like one model looks under ``settings`` (higher = more faker-like)."""
        raise NotImplementedError(f"{self.name} defines margin() instead of statistic()")

    def margin(self, a: Score, b: Score, **settings: Any) -> float:
        """Positive when model ``a`` looks like the faker, negative for ``b``, 0 for a tie."""
        settings = {**self.headline, **settings}
        return float(self.statistic(a, **settings) - self.statistic(b, **settings))

    def verdict(
        self, a: Score, b: Score, rng: random.Random | None = None, **settings: Any
    ) -> Literal["a", "b"]:
        """Which model of the pair is the faker; ties (and NaN) go to a seeded coin."""
        m = self.margin(a, b, **settings)
        if m > 0:
            return "a"
        if m < 0:
            return "b"
        return "a" if (rng or random.Random(0)).random() < 0.5 else "b"

    def restrict(self, score: Score, keep: Set[int]) -> Score:
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
        """The config as a plain dict (saved beside results)."""
        config = self.config
        return asdict(config) if is_dataclass(config) and not isinstance(config, type) else {}


@dataclass(frozen=True)
class NoConfig:
    """A strategy without settings."""


def config_from_dict(cls: type, d: Mapping[str, Any]) -> Any:
    """Build a config dataclass from a dict, with a clear error for unknown keys.

    Lists become tuples where the default is a tuple (so YAML round-trips keep hashability).

    Example:
        >>> @dataclass(frozen=True)
        ... class C:
        ...     xs: tuple[int, ...] = (1,)
        >>> config_from_dict(C, {"xs": [2, 3]})
        C(xs=(2, 3))
        >>> config_from_dict(C, {"y": 1})
        Traceback (most recent call last):
        ...
        ValueError: C: unknown setting 'y' (known: xs)
    """
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown setting {unknown[0]!r} (known: {', '.join(known)})"
        )
    defaults = cls()
    out = {}
    for k, v in d.items():
        if isinstance(getattr(defaults, k), tuple) and isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[k] = v
    return cls(**out)
