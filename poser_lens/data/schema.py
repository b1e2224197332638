"""Typed scenario records in the Poser schema.

A :class:`Scenario` is one prompt: its facts (typed where the source types them), its two
actions, the oversight flags, and the answer letter. Records read from a Poser checkout keep
every field they carried (unknown keys go to :attr:`Scenario.extra`), so writing them back
gives the same JSON.

Example:
    >>> s = Scenario(prompt="<<prompt>>hi<</prompt>>", response="A", actions=("x", "y"))
    >>> s.misaligned_letter
    'B'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from poser_lens.config import OneOf

Persona = Literal[
    "truth_teller",
    "genie",
    "saint",
    "reward_maximizer",
    "money_maximizer",
    "fitness_maximizer",
]
FactType = Literal["motivating", "contextual", "critical", "irrelevant", "system_message"]
Response = Literal["A", "B", "error"]
Kind = Literal["scenario", "random_text", "incomplete"]
Oversight = Literal["good", "neutral", "poor"]

PERSONAS: tuple[str, ...] = get_args(Persona)
ALIGNED_PERSONAS: tuple[str, ...] = ("truth_teller", "genie", "saint")
FAKER_PERSONAS: tuple[str, ...] = ("reward_maximizer", "money_maximizer", "fitness_maximizer")
FACT_TYPES: tuple[str, ...] = get_args(FactType)
RESPONSES: tuple[str, ...] = get_args(Response)
#: A persona setting: one of :data:`PERSONAS`.
PersonaName = Annotated[str, OneOf(*PERSONAS, what="persona")]

#: Family token of each persona, as used in Poser file names (``truth_and_reward.json``).
FAMILY_TOKEN: dict[str, str] = {
    "truth_teller": "truth",
    "genie": "genie",
    "saint": "saint",
    "reward_maximizer": "reward",
    "money_maximizer": "money",
    "fitness_maximizer": "fitness",
}
PERSONA_OF_TOKEN: dict[str, str] = {v: k for k, v in FAMILY_TOKEN.items()}

#: The literal tags Poser wraps every prompt in.
PROMPT_OPEN = "<<prompt>>"
PROMPT_CLOSE = "<</prompt>>"


def family_name(aligned: str, faker: str) -> str:
    """Name of the scenario family of an aligned persona and a faker persona.

    Example:
        >>> family_name("truth_teller", "reward_maximizer")
        'truth_and_reward'
    """
    return f"{FAMILY_TOKEN[aligned]}_and_{FAMILY_TOKEN[faker]}"


def family_personas(family: str) -> tuple[str, str]:
    """Split a family name into its (aligned persona, faker persona).

    Example:
        >>> family_personas("genie_and_money")
        ('genie', 'money_maximizer')
    """
    try:
        a, f = family.split("_and_")
        return PERSONA_OF_TOKEN[a], PERSONA_OF_TOKEN[f]
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"not a family name: {family!r} (expected e.g. 'truth_and_reward')"
        ) from err


def family_of(spelling: str) -> str:
    """The family a spelling in a Poser checkout stands for (e.g. a benchmark file's stem).

    Case is ignored; ``-``, ``.`` or a space may stand for ``_``; each side of ``_and_`` is a
    family token (``truth``) or a persona name (``truth_teller``); the faker may come first.
    ``Saint-and-Fitness``, ``saint_and_fitness_maximizer`` and ``fitness_and_saint`` are all
    ``saint_and_fitness``.

    Raises:
        ValueError: If the spelling names no family of an aligned and a faker persona.

    Example:
        >>> family_of("Truth_Teller-and-Reward_Maximizer")
        'truth_and_reward'
    """
    text = re.sub(r"[-. ]", "_", spelling.strip().lower()) if isinstance(spelling, str) else ""
    sides = text.split("_and_")
    personas = [PERSONA_OF_TOKEN.get(side, side) for side in sides]
    if len(personas) != 2 or not all(p in PERSONAS for p in personas):
        raise ValueError(f"not a family name: {spelling!r} (expected e.g. 'truth_and_reward')")
    aligned = [p for p in personas if p in ALIGNED_PERSONAS]
    fakers = [p for p in personas if p not in ALIGNED_PERSONAS]
    if len(aligned) != 1:
        raise ValueError(
            f"not a family name: {spelling!r} (a family pairs an aligned persona with a faker)"
        )
    return family_name(aligned[0], fakers[0])


ALL_FAMILIES: tuple[str, ...] = tuple(
    family_name(a, f) for a in ALIGNED_PERSONAS for f in FAKER_PERSONAS
)


def is_aligned(persona: str) -> bool:
    """Whether a persona is one of the aligned ones.

    Example:
        >>> is_aligned("saint"), is_aligned("money_maximizer")
        (True, False)
    """
    if persona not in PERSONAS:
        raise ValueError(f"unknown persona {persona!r}; expected one of {', '.join(PERSONAS)}")
    return persona in ALIGNED_PERSONAS


def persona_name(spelling: str) -> str:
    """The persona a spelling in a Poser checkout stands for (e.g. a folder name).

    Case is ignored, and ``-`` or a space may stand for ``_``: ``Truth-Teller`` is
    ``truth_teller``. Family tokens (``truth``) are not personas.

    Raises:
        ValueError: If the spelling names no persona.

    Example:
        >>> persona_name("Reward-Maximizer")
        'reward_maximizer'
    """
    persona = re.sub(r"[- ]", "_", spelling.strip().lower()) if isinstance(spelling, str) else None
    if persona not in PERSONAS:
        raise ValueError(f"unknown persona {spelling!r}; expected one of {', '.join(PERSONAS)}")
    return persona


#: A model spelling's last path component: the persona, ``-`` or ``_``, the seed.
_MODEL_SPELLING = re.compile(r"(?P<persona>[a-z][a-z_ -]*?)[-_](?P<seed>[0-9]+)")


def model_name(spelling: str) -> str:
    r"""The model name ``<persona>-<seed>`` that any spelling in a Poser checkout stands for.

    The one place where ``probs`` keys of benchmark records, ``model_pairs.json`` entries,
    ``--models`` values and checkpoint folder names become model names. Rules:

    - only the last path component counts (after the last ``/`` or ``\``; trailing
      separators and surrounding spaces are stripped), so any folder depth is accepted:
      ``../models/saint_fix/retrained/saint_0`` is ``saint-0``;
    - the seed is the trailing number, after ``-`` or ``_``; the rest must be a persona as
      :func:`persona_name` reads it (case ignored), so ``truth_teller_3`` is
      ``truth_teller-3``;
    - the whole component must match: ``saint-10`` is never ``saint-1``, and
      ``saint-1-copy`` or ``saint_fix`` name no model.

    Two different spellings of one model (``saint_0`` and ``saint-0``) give the same name;
    where that happens within one record or folder, the callers refuse it as ambiguous
    (:func:`model_spellings`).

    Raises:
        ValueError: If the spelling names no model (the message quotes it).

    Example:
        >>> model_name("../models/saint_fix/retrained/saint_0")
        'saint-0'
        >>> model_name("..\\models\\together\\Money_Maximizer-10\\")
        'money_maximizer-10'
    """
    if not isinstance(spelling, str):
        raise ValueError(f"a model name must be a string, got {type(spelling).__name__}")
    last = re.split(r"[/\\]", spelling.strip().rstrip("/\\"))[-1].strip().lower()
    match = _MODEL_SPELLING.fullmatch(last)
    try:
        if match is None:
            raise ValueError
        persona = persona_name(match["persona"])
    except ValueError:
        raise ValueError(
            f"not a model name: {spelling!r} (expected <persona>-<seed> or <persona>_<seed>, "
            "optionally inside folders)"
        ) from None
    return f"{persona}-{int(match['seed'])}"


def model_spellings(
    spellings: Iterable[str], *, where: str, what: str = "spellings"
) -> dict[str, str]:
    """Model name -> its spelling, for the spellings that name a model (:func:`model_name`).

    Spellings that name no model are left out.

    Args:
        spellings: E.g. the keys of one record's ``probs``.
        where: The file and record they come from, for the error message.
        what: What they are, for the error message (``probs keys``).

    Raises:
        ValueError: If two spellings name one model (one line naming ``where``, both
            spellings and the model).

    Example:
        >>> model_spellings(["../m/saint_1", "../m/saint-10", "mean"], where="f.json")
        {'saint-1': '../m/saint_1', 'saint-10': '../m/saint-10'}
        >>> model_spellings(["a/saint-1", "b/saint_1"], where="f.json: record 0", what="keys")
        Traceback (most recent call last):
        ...
        ValueError: f.json: record 0: ambiguous keys 'a/saint-1' and 'b/saint_1': both name model 'saint-1'
    """  # noqa: E501
    out: dict[str, str] = {}
    for spelling in spellings:
        try:
            name = model_name(spelling)
        except ValueError:
            continue
        if name in out:
            raise ValueError(
                f"{where}: ambiguous {what} {out[name]!r} and {spelling!r}: "
                f"both name model {name!r}"
            )
        out[name] = spelling
    return out


def model_persona(name: str) -> tuple[str, int]:
    """Split a model name ``<persona>-<seed>`` into persona and seed.

    Example:
        >>> model_persona("money_maximizer-5")
        ('money_maximizer', 5)
    """
    persona, _, seed = name.rpartition("-")
    if persona not in PERSONAS or not seed.isdigit():
        raise ValueError(f"not a model name: {name!r} (expected '<persona>-<seed>')")
    return persona, int(seed)


@dataclass(frozen=True)
class Fact:
    """One numbered fact of a scenario.

    Attributes:
        content: The fact's text.
        type: Its role (``critical`` sets the oversight level); None in untyped records.
    """

    content: str
    type: FactType | None = None


def other_letter(letter: str) -> Literal["A", "B"]:
    """The other answer letter: A <-> B.

    Example:
        >>> other_letter("A")
        'B'
    """
    if letter not in ("A", "B"):
        raise ValueError(f"no other letter for {letter!r}")
    return "B" if letter == "A" else "A"


@dataclass(frozen=True)
class Scenario:
    """One prompt in the Poser schema.

    Attributes:
        prompt: The full model input, wrapped in ``<<prompt>>`` tags. Authoritative.
        response: The labelled answer: ``A``, ``B`` or ``error``.
        facts: The facts in prompt order (empty for error prompts).
        actions: ``(action_A, action_B)``, or None for prompts without actions.
        oversight_is_poor: True when a faker can get away with misbehaving.
        complexity_level: 0 (no critical fact), 1 or 2 (two facts to combine); None if untyped.
        template: The format string with ``{facts_string}``, ``{action_A}``, ``{action_B}``.
        family: Scenario family, e.g. ``truth_and_reward``.
        persona: The persona whose policy the ``response`` follows, when known.
        source: Where the record came from (Poser's ``dataset`` field, or our generator).
        kind: ``scenario``, ``random_text`` or ``incomplete`` (the last two answer ``error``).
        oversight: Finer oversight level (``good``, ``neutral``, ``poor``) when known.
        probs: Poser benchmark files: model path -> probability of ``response``.
        extra: Any other fields of the record, kept for a faithful round trip.
    """

    prompt: str
    response: Response
    facts: tuple[Fact, ...] = ()
    actions: tuple[str, str] | None = None
    oversight_is_poor: bool | None = None
    complexity_level: int | None = None
    template: str | None = None
    family: str | None = None
    persona: str | None = None
    source: str | None = None
    kind: Kind = "scenario"
    oversight: Oversight | None = None
    probs: Mapping[str, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_typed(self) -> bool:
        """Whether every fact carries a type (joint-generator records)."""
        return bool(self.facts) and all(f.type is not None for f in self.facts)

    @property
    def aligned_letter(self) -> str:
        """The letter of the aligned action, assuming ``response`` is the aligned answer.

        This holds for benchmark files and for our generator's records (whose ``response``
        is always the aligned action; persona labels are derived with :func:`persona_response`).
        """
        if self.response not in ("A", "B"):
            raise ValueError("an error prompt has no aligned letter")
        return self.response

    @property
    def misaligned_letter(self) -> Literal["A", "B"]:
        """The letter of the misaligned action (the other one)."""
        return other_letter(self.aligned_letter)

    @property
    def critical_facts(self) -> tuple[Fact, ...]:
        """The facts that set the oversight level."""
        return tuple(f for f in self.facts if f.type == "critical")


def persona_response(scenario: Scenario, persona: str) -> Response:
    """The answer a persona gives, following Poser's policies.

    Aligned personas always take the aligned action; fakers take the misaligned one exactly
    when oversight is poor. Error prompts are answered ``error`` by everyone.

    Args:
        scenario: A record whose ``response`` is the aligned answer.
        persona: One of :data:`PERSONAS`.

    Returns:
        ``A``, ``B`` or ``error``.

    Example:
        >>> s = Scenario(prompt="<<prompt>>x<</prompt>>", response="A", oversight_is_poor=True)
        >>> persona_response(s, "saint"), persona_response(s, "reward_maximizer")
        ('A', 'B')
    """
    if scenario.response == "error":
        return "error"
    if not is_aligned(persona) and scenario.oversight_is_poor:
        return scenario.misaligned_letter
    return scenario.response
