"""One Poser record <-> one :class:`~poser_lens.data.schema.Scenario`, and one file of them.

Checks a record and reads it into a scenario (:func:`scenario_from_record`), writes it back
(:func:`scenario_to_record`), and loads or writes a whole JSON file of records
(:func:`load_scenarios`, :func:`write_scenarios`). A record the code cannot use raises
:class:`PoserFormatError`, whose one-line message names the file and the record index.

Round trip: :func:`scenario_to_record` gives back (as an equal dict) the record
:func:`scenario_from_record` read. Keys that no :class:`Scenario` field holds go to
:attr:`Scenario.extra` and are written back as they were read, even if the scenario was edited
since (``facts_string``, ``num_facts``, ``filtered_out``...).

The actions and the template have a *layout*: Poser records usually carry the actions three
times (``actions``, ``action_A``, ``action_B``) and the template as ``format_string``; some
carry ``format`` instead, or only some of the action keys. The usual layout is what
:func:`scenario_to_record` writes by default, so it leaves no trace in ``extra``. Any other
layout is recorded by keeping that group's keys in ``extra``; on writing, their values are
refreshed from :attr:`Scenario.actions` and :attr:`Scenario.template`, so an edited scenario
(e.g. with swapped actions) stays coherent.

Example:
    >>> rec = {"prompt": "<<prompt>>Hi<</prompt>>", "response": "error"}
    >>> s = scenario_from_record(rec, where="x.json", index=0, family=None, persona=None)
    >>> s.kind, scenario_to_record(s) == rec
    ('incomplete', True)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from poser_lens._io import read_json, write_json_atomic
from poser_lens.data.schema import (
    FACT_TYPES,
    PROMPT_CLOSE,
    PROMPT_OPEN,
    RESPONSES,
    Fact,
    Kind,
    Scenario,
)

# Under the package's name (``poser_lens.data.poser``), as before the module was split.
logger = logging.getLogger(__package__)

PathLike = str | os.PathLike[str]

#: Keys that carry the two actions (all three in the usual layout).
_ACTION_KEYS = ("actions", "action_A", "action_B")
#: Keys that carry the template (``format_string`` alone in the usual layout; it wins if both).
_TEMPLATE_KEYS = ("format_string", "format")
_USUAL_LAYOUT = {_ACTION_KEYS: _ACTION_KEYS, _TEMPLATE_KEYS: _TEMPLATE_KEYS[:1]}
#: Record keys read into a Scenario field (kept in ``extra`` only when null or empty).
_FIELD_KEYS: tuple[str, ...]
_FIELD_KEYS = ("prompt", "response", "facts", "oversight_is_poor", "complexity_level", "dataset")
_FIELD_KEYS += ("oversight", "probs")
#: Key order of written records (that of Poser's joint records): these first when present,
#: then the other keys in the order they were read, ``probs`` last.
_FIRST_KEYS: tuple[str, ...]
_FIRST_KEYS = ("complexity_level", "oversight_is_poor", "facts", "actions", "prompt")
_FIRST_KEYS += (*_TEMPLATE_KEYS, "response", "filtered_out", "dataset", "action_A", "action_B")

_OVERSIGHTS = ("good", "neutral", "poor")
_COMPLEXITIES = (0, 1, 2)


class PoserFormatError(ValueError):
    """A file or record that cannot be used; the message is one line.

    The message reads ``"<file>: record <i>: <what is wrong>"`` (or ``"<file>: <what>"`` for a
    problem with the whole file).

    Attributes:
        where: The file (or other source) of the record.
        index: The record's index in its file, or None for the whole file.
        what: What is wrong.

    Example:
        >>> str(PoserFormatError("a.json", 3, "no prompt"))
        'a.json: record 3: no prompt'
    """

    def __init__(self, where: str, index: int | None, what: str):
        self.where, self.index, self.what = where, index, what
        place = where if index is None else f"{where}: record {index}"
        super().__init__(" ".join(f"{place}: {what}".splitlines()))


# --------------------------------------------------------------------------------------------
# One record <-> one Scenario


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Fail:
    """Builds the PoserFormatError of one record."""

    def __init__(self, where: str, index: int):
        self.where, self.index = where, index
        self.place = f"{where}: record {index}"

    def __call__(self, what: str) -> PoserFormatError:
        return PoserFormatError(self.where, self.index, what)


def _read_facts(raw: Any, fail: _Fail) -> tuple[Fact, ...]:
    if not isinstance(raw, list):
        raise fail(f"facts must be a list, got {_type_name(raw)}")
    facts = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise fail(f"fact {i} must be an object, got {_type_name(item)}")
        if not isinstance(item.get("content"), str):
            raise fail(f"fact {i} has no string 'content'")
        unknown = sorted(set(item) - {"type", "content"})
        if unknown:
            raise fail(f"fact {i} has unknown keys {unknown} (expected 'type' and 'content')")
        if "type" in item and item["type"] not in FACT_TYPES:
            raise fail(
                f"fact {i} has unknown type {_short(item['type'])}; "
                f"expected one of {', '.join(FACT_TYPES)}"
            )
        facts.append(Fact(content=item["content"], type=item.get("type")))
    return tuple(facts)


def _read_actions(rec: Mapping[str, Any], fail: _Fail) -> tuple[str, str] | None:
    if "actions" in rec:
        raw = rec["actions"]
        if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(a, str) for a in raw)):
            raise fail(f"actions must be a list of 2 strings, got {_short(raw)}")
        actions = (raw[0], raw[1])
        split = (rec.get("action_A", actions[0]), rec.get("action_B", actions[1]))
        if split != actions:
            logger.warning("%s: action_A/action_B differ from actions; using actions", fail.place)
        return actions
    if "action_A" not in rec and "action_B" not in rec:
        return None
    a, b = rec.get("action_A"), rec.get("action_B")
    if not (isinstance(a, str) and isinstance(b, str)):
        raise fail(f"action_A and action_B must both be strings, got {_short([a, b])}")
    return (a, b)


def _read_template(rec: Mapping[str, Any], fail: _Fail) -> str | None:
    present = [k for k in _TEMPLATE_KEYS if rec.get(k) is not None]
    for key in present:
        if not isinstance(rec[key], str):
            raise fail(f"{key} must be a string, got {_type_name(rec[key])}")
    if len({rec[k] for k in present}) > 1:
        logger.warning("%s: format and format_string differ; using format_string", fail.place)
    return rec[present[0]] if present else None


def _check_choice(rec: Mapping[str, Any], key: str, allowed: Sequence[Any], fail: _Fail) -> Any:
    value = rec.get(key)
    # bool is an int: True must not pass as complexity 1, nor 1 as a flag.
    wants_bool = all(isinstance(a, bool) for a in allowed)
    if value is not None and (value not in allowed or isinstance(value, bool) != wants_bool):
        raise fail(f"{key} must be one of {list(allowed)}, got {_short(value)}")
    return value


def _read_probs(raw: Any, fail: _Fail) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()
    ):
        raise fail("probs must map model paths to numbers")
    return dict(raw)


def _kind(rec: Mapping[str, Any]) -> Kind:
    dataset = rec.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("data/random_text"):
        return "random_text"
    if rec["response"] == "error" and "dataset" not in rec:
        return "incomplete"
    return "scenario"


def scenario_from_record(
    rec: Any, *, where: str, index: int, family: str | None, persona: str | None
) -> Scenario:
    r"""Check one Poser record and turn it into a :class:`Scenario`.

    ``kind`` is derived: ``random_text`` when ``dataset`` starts with ``data/random_text``,
    ``incomplete`` for an ``error`` record without a ``dataset`` key, else ``scenario``.

    Args:
        rec: The decoded JSON record.
        where: The file it came from (for error messages).
        index: Its index in that file (for error messages).
        family: The scenario family to record (e.g. ``truth_and_reward``), if known.
        persona: The persona whose policy ``response`` follows, if known.

    Returns:
        The scenario; every key of ``rec`` is kept (see the module docstring).

    Raises:
        PoserFormatError: If the record is not an object, has no string ``prompt`` wrapped in
            the prompt tags, a ``response`` outside A/B/error, facts that are not objects with
            a string ``content`` and a known ``type``, or actions that are not two strings.

    Example:
        >>> rec = {"prompt": "<<prompt>>1. Sky.\nA: x\nB: y<</prompt>>", "response": "B",
        ...        "facts": [{"content": "Sky."}], "action_A": "x", "action_B": "y"}
        >>> s = scenario_from_record(rec, where="f.json", index=0, family=None, persona="saint")
        >>> s.actions, s.is_typed, s.extra  # no "actions" key: the layout is kept in extra
        (('x', 'y'), False, {'action_A': 'x', 'action_B': 'y'})
    """
    fail = _Fail(where, index)
    if not isinstance(rec, dict):
        raise fail(f"expected an object, got {_type_name(rec)}")
    prompt = rec.get("prompt")
    if not isinstance(prompt, str):
        raise fail(
            "no prompt" if prompt is None else f"prompt must be a string, got {_short(prompt)}"
        )
    if not (prompt.startswith(PROMPT_OPEN) and prompt.endswith(PROMPT_CLOSE)):
        raise fail(
            f"prompt is not wrapped in the {PROMPT_OPEN} ... {PROMPT_CLOSE} tags: {_short(prompt)}"
        )
    if rec.get("response") not in RESPONSES:
        got = "no response" if "response" not in rec else f"response {_short(rec['response'])}"
        raise fail(f"{got}; expected one of {', '.join(RESPONSES)}")
    facts = _read_facts(rec["facts"], fail) if rec.get("facts") is not None else ()
    if rec.get("dataset") is not None and not isinstance(rec["dataset"], str):
        raise fail(f"dataset must be a string, got {_type_name(rec['dataset'])}")
    # Keys read into fields stay in extra only when their value would not survive the
    # field (null, or an empty fact list), so that writing back restores them.
    consumed = {k for k in _FIELD_KEYS if rec.get(k) not in (None, [])}
    for keys, usual in _USUAL_LAYOUT.items():
        present = [k for k in keys if k in rec]
        if present == list(usual) and all(rec[k] is not None for k in usual):
            consumed.update(usual)
    return Scenario(
        prompt=prompt,
        response=rec["response"],
        facts=facts,
        actions=_read_actions(rec, fail),
        oversight_is_poor=_check_choice(rec, "oversight_is_poor", (True, False), fail),
        complexity_level=_check_choice(rec, "complexity_level", _COMPLEXITIES, fail),
        template=_read_template(rec, fail),
        family=family,
        persona=persona,
        source=rec.get("dataset"),
        kind=_kind(rec),
        oversight=_check_choice(rec, "oversight", _OVERSIGHTS, fail),
        probs=_read_probs(rec.get("probs"), fail),
        extra={k: v for k, v in rec.items() if k not in consumed},
    )


def _fact_record(fact: Fact) -> dict[str, str]:
    return (
        {"content": fact.content}
        if fact.type is None
        else {"type": fact.type, "content": fact.content}
    )


def _put_layout(rec: dict[str, Any], keys: tuple[str, ...], values: dict[str, Any] | None) -> None:
    """Write one layout group: refresh the keys the record kept, else write the usual ones.

    A key kept with a null value stays null; without values (no actions, no template), the
    group's keys are removed.
    """
    present = [k for k in keys if rec.get(k) is not None]
    if values is None:
        for key in present:
            del rec[key]
    else:
        rec.update((k, values[k]) for k in present or _USUAL_LAYOUT[keys])


def scenario_to_record(s: Scenario) -> dict[str, Any]:
    """Turn a :class:`Scenario` back into a Poser record.

    The inverse of :func:`scenario_from_record`: for a record read from a file, the result
    equals that record. ``family``, ``persona`` and ``kind`` are not written (a file's place
    gives the first two; ``kind`` follows from ``dataset`` and ``response``, so a
    ``random_text`` scenario needs a ``source`` starting with ``data/random_text``). A
    scenario built in code (empty ``extra``) gets Poser's usual layout: ``actions`` plus
    ``action_A`` and ``action_B``, and ``format_string``.

    Args:
        s: The scenario.

    Returns:
        A JSON-serialisable dict.

    Example:
        >>> s = Scenario(prompt="<<prompt>>x<</prompt>>", response="A", actions=("p", "q"))
        >>> list(scenario_to_record(s))
        ['actions', 'prompt', 'response', 'action_A', 'action_B']
    """
    rec: dict[str, Any] = dict(s.extra)
    actions = None
    if s.actions is not None:
        actions = {"actions": list(s.actions), "action_A": s.actions[0], "action_B": s.actions[1]}
    _put_layout(rec, _ACTION_KEYS, actions)
    template = None if s.template is None else dict.fromkeys(_TEMPLATE_KEYS, s.template)
    _put_layout(rec, _TEMPLATE_KEYS, template)
    fields = {
        "prompt": s.prompt,
        "response": s.response,
        "facts": [_fact_record(f) for f in s.facts] or None,
        "oversight_is_poor": s.oversight_is_poor,
        "complexity_level": s.complexity_level,
        "dataset": s.source,
        "oversight": s.oversight,
        "probs": None if s.probs is None else dict(s.probs),
    }
    rec.update((k, v) for k, v in fields.items() if v is not None)
    ordered = {k: rec[k] for k in _FIRST_KEYS if k in rec}
    ordered.update((k, v) for k, v in rec.items() if k != "probs")
    if "probs" in rec:
        ordered["probs"] = rec["probs"]
    return ordered


# --------------------------------------------------------------------------------------------
# Files


def _records(path: PathLike) -> list[Any]:
    """The records of a JSON file that must hold a list."""
    records = read_json(path)
    if not isinstance(records, list):
        what = f"expected a JSON list of records, got {_type_name(records)}"
        raise PoserFormatError(str(path), None, what)
    return records


def load_scenarios(
    path: PathLike, *, family: str | None = None, persona: str | None = None
) -> list[Scenario]:
    """Load one Poser JSON file: a list of scenario records.

    Args:
        path: The file.
        family: Scenario family to record on every scenario (e.g. ``truth_and_reward``).
        persona: Persona whose policy the file's ``response`` follows.

    Returns:
        The scenarios, in stored order.

    Raises:
        PoserFormatError: If the file is not a JSON list, or a record is unusable.
        ValueError: If the file is not valid JSON.
        OSError: If it cannot be read.

    Example:
        >>> import tempfile, pathlib, json
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "test.json"
        >>> _ = p.write_text(json.dumps([{"prompt": "<<prompt>>2+2?<</prompt>>",
        ...                              "response": "error", "dataset": "data/random_text/"}]))
        >>> [s.kind for s in load_scenarios(p, persona="genie")]
        ['random_text']
    """
    return [
        scenario_from_record(rec, where=str(path), index=i, family=family, persona=persona)
        for i, rec in enumerate(_records(path))
    ]


def write_scenarios(path: PathLike, scenarios: Iterable[Scenario]) -> None:
    """Write scenarios as a Poser JSON file (atomically; see :func:`scenario_to_record`).

    Args:
        path: The file to write (parent folders are created).
        scenarios: The scenarios, written in order.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.json"
        >>> write_scenarios(p, [Scenario(prompt="<<prompt>>hm<</prompt>>", response="error")])
        >>> load_scenarios(p)[0].kind
        'incomplete'
    """
    write_json_atomic(path, [scenario_to_record(s) for s in scenarios], indent=1)
