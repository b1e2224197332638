"""Read (and write back) the data of a Poser checkout.

ROOT is either a Poser checkout (the folder holding ``data/`` and ``model_pairs.json``) or its
``data/`` folder; :func:`resolve_root` tells them apart. The parts read here:

- ``data/benchmark/{family}.json``: the valid data of each family pair (:func:`load_benchmark`);
- ``data/training/{persona}/{train-0..5,test}.json``: training splits (:func:`load_training`);
- ``data/policy_definitions/{persona}/test.json``: diverging scenarios
  (:func:`load_policy_definitions`);
- ``model_pairs.json``: the aligned/faker pairs (:func:`load_model_pairs`);
- ``src/detection_strategies/concepts/*.json``: concept examples (:func:`load_concepts`).

Absent parts load as empty containers. A record the code cannot use raises
:class:`PoserFormatError`, whose one-line message names the file and the record index.

Names are read however the release spells them: model names by
:func:`~poser_lens.data.schema.model_name` (``saint_0``, ``../models/together/saint-0``),
benchmark file names by :func:`~poser_lens.data.schema.family_of` (``Saint-and-Fitness.json``),
persona folders by :func:`~poser_lens.data.schema.persona_name` (``Truth-Teller``), training
splits as ``train-<i>`` or ``train_<i>``. Two files or folders that stand for one name are
refused (one line naming the folder and both).

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
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
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
    family_name,
    family_of,
    is_aligned,
    model_name,
    model_persona,
    persona_name,
)

logger = logging.getLogger(__name__)

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

_PARTS = ("benchmark", "training", "policy_definitions")
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


@dataclass(frozen=True)
class PoserPaths:
    """Where the parts of a Poser checkout are.

    Attributes:
        data: The ``data/`` folder (it may not exist in a checkout without data).
        checkout: The checkout holding ``model_pairs.json`` and ``src/``, if known.
    """

    data: Path
    checkout: Path | None

    @property
    def model_pairs(self) -> Path | None:
        """The ``model_pairs.json`` file, if there is a checkout."""
        return None if self.checkout is None else self.checkout / "model_pairs.json"

    @property
    def concepts(self) -> Path | None:
        """The folder of concept files, if there is a checkout."""
        if self.checkout is None:
            return None
        return self.checkout / "src" / "detection_strategies" / "concepts"


def _is_checkout(folder: Path) -> bool:
    return (
        (folder / "data").is_dir()
        or (folder / "model_pairs.json").is_file()
        or (folder / "src" / "detection_strategies").is_dir()
    )


def resolve_root(root: PathLike) -> PoserPaths:
    """Find the data folder and the checkout of a ROOT given as either of them.

    ROOT is a checkout if it holds ``data/``, ``model_pairs.json`` or
    ``src/detection_strategies/``; it is a data folder if it holds ``benchmark/``,
    ``training/`` or ``policy_definitions/`` (its parent is then the checkout when it looks
    like one).

    Args:
        root: The folder.

    Returns:
        The resolved paths.

    Raises:
        FileNotFoundError: If ROOT is not a folder.
        ValueError: If it is neither a checkout nor a data folder.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "data" / "benchmark").mkdir(parents=True)
        >>> resolve_root(root / "data") == resolve_root(root) == PoserPaths(root / "data", root)
        True
    """
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if _is_checkout(folder):
        return PoserPaths(data=folder / "data", checkout=folder)
    if any((folder / part).is_dir() for part in _PARTS):
        # ROOT "." or ".." has no lexical parent: resolve it then.
        parent = folder.parent if folder.name not in ("", "..") else folder.resolve().parent
        checkout = parent if _is_checkout(parent) else None
        return PoserPaths(data=folder, checkout=checkout)
    raise ValueError(
        f"{folder}: not a Poser checkout (no data/ or model_pairs.json) nor its data folder "
        f"(no {'/, '.join(_PARTS)}/)"
    )


@dataclass(frozen=True)
class _DataFile:
    """One scenario file of a Poser data folder, with what its place says about it."""

    part: str
    path: Path
    family: str | None = None
    persona: str | None = None

    def load(self) -> list[Scenario]:
        return load_scenarios(self.path, family=self.family, persona=self.persona)


def _split_name(path: Path) -> str:
    """The split a training file holds: ``train-<i>`` (also spelled ``train_<i>``), ``test``."""
    match = re.fullmatch(r"train[-_ ]?(\d+)", path.stem, flags=re.IGNORECASE)
    if match:
        return f"train-{int(match.group(1))}"
    return "test" if path.stem.lower() == "test" else path.stem


def _split_order(path: Path) -> tuple[int, int, str]:
    split = _split_name(path)
    if split.startswith("train-"):
        return (0, int(split.removeprefix("train-")), "")
    return (1 if split == "test" else 2, 0, split)


def _unique(folder: Path, found: Mapping[str, Path], key: str, path: Path, what: str) -> None:
    """Refuse a second file or folder of ``folder`` that stands for the same ``key``."""
    if key in found:
        raise PoserFormatError(
            str(folder), None, f"{found[key].name!r} and {path.name!r} both hold {what} {key!r}"
        )


def _persona_dirs(folder: Path) -> list[tuple[Path, str | None]]:
    """Subfolders named after personas, with the persona (None, and a warning, if unknown).

    A persona may be spelled as :func:`~poser_lens.data.schema.persona_name` reads it
    (``Truth-Teller``); two folders of one persona are refused.
    """
    if not folder.is_dir():
        return []
    found: list[tuple[Path, str | None]] = []
    seen: dict[str, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            persona = persona_name(sub.name)
        except ValueError:
            logger.warning("%s: not a persona name; its scenarios get no persona", sub)
            found.append((sub, None))
            continue
        _unique(folder, seen, persona, sub, "persona")
        seen[persona] = sub
        found.append((sub, persona))
    return found


def benchmark_files(root: PathLike) -> dict[str, Path]:
    """The benchmark files of ROOT by family, whatever spelling their names use.

    A file's family is :func:`~poser_lens.data.schema.family_of` its name
    (``Saint-and-Fitness.json`` is ``saint_and_fitness``); a name that is no family keeps its
    stem (with a warning).

    Args:
        root: A Poser checkout or its data folder.

    Returns:
        Family -> file, in file name order; empty if there is no ``benchmark/`` folder.

    Raises:
        PoserFormatError: If two files stand for one family (naming the folder and both).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "benchmark").mkdir()
        >>> _ = (root / "benchmark" / "Saint-and-Fitness.json").write_text("[]")
        >>> {f: p.name for f, p in benchmark_files(root).items()}
        {'saint_and_fitness': 'Saint-and-Fitness.json'}
    """
    return _benchmark_files(resolve_root(root))


def _benchmark_files(paths: PoserPaths) -> dict[str, Path]:
    folder = paths.data / "benchmark"
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            family = family_of(path.stem)
        except ValueError:
            family = path.stem
            logger.warning("%s: file name is not a family name", path)
        _unique(folder, found, family, path, "family")
        found[family] = path
    return found


def _data_files(paths: PoserPaths, part: str) -> list[_DataFile]:
    folder = paths.data / part
    if part == "benchmark":
        return [_DataFile(part, f, family=fam) for fam, f in _benchmark_files(paths).items()]
    found = []
    for sub, persona in _persona_dirs(folder):
        if part == "training":
            names = sorted(sub.glob("*.json"), key=_split_order)
            splits: dict[str, Path] = {}
            for f in names:
                _unique(sub, splits, _split_name(f), f, "split")
                splits[_split_name(f)] = f
        else:
            names = [sub / "test.json"] if (sub / "test.json").is_file() else []
        found += [_DataFile(part, f, persona=persona) for f in names]
    return found


def load_benchmark(root: PathLike) -> dict[str, list[Scenario]]:
    """Load the benchmark files (the valid data of each family pair).

    Args:
        root: A Poser checkout or its data folder.

    Returns:
        Family (e.g. ``truth_and_reward``, however the file name spells it, see
        :func:`benchmark_files`) -> its scenarios, by file name; empty if there is no
        ``benchmark/`` folder.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "data" / "benchmark").mkdir(parents=True)
        >>> load_benchmark(root)
        {}
    """
    files = _benchmark_files(resolve_root(root))
    return {fam: load_scenarios(path, family=fam) for fam, path in files.items()}


def load_training(root: PathLike) -> dict[str, dict[str, list[Scenario]]]:
    """Load the per-persona training splits.

    Args:
        root: A Poser checkout or its data folder.

    Returns:
        Persona -> split (``train-0`` .. ``train-5``, ``test``) -> scenarios, splits in that
        order; empty if there is no ``training/`` folder. Folder and file names may be spelled
        with ``-`` or ``_`` and in any case (``Truth-Teller/train_0.json``); a folder that
        names no persona keeps its name.

    Raises:
        PoserFormatError: If two folders stand for one persona, or two files for one split.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "training" / "saint").mkdir(parents=True)
        >>> load_training(root)
        {}
    """
    out: dict[str, dict[str, list[Scenario]]] = {}
    for f in _data_files(resolve_root(root), "training"):
        out.setdefault(f.persona or f.path.parent.name, {})[_split_name(f.path)] = f.load()
    return out


def load_policy_definitions(root: PathLike) -> dict[str, list[Scenario]]:
    """Load the policy definitions: per persona, the scenarios where the policies diverge.

    Args:
        root: A Poser checkout or its data folder.

    Returns:
        Persona (its folder's name as for :func:`load_training`) -> scenarios of its
        ``test.json``; empty if there are none.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "policy_definitions").mkdir()
        >>> load_policy_definitions(root)
        {}
    """
    files = _data_files(resolve_root(root), "policy_definitions")
    return {f.persona or f.path.parent.name: f.load() for f in files}


# --------------------------------------------------------------------------------------------
# Model pairs and concepts


@dataclass(frozen=True)
class ModelPair:
    """One pair of the benchmark: an aligned model, a faker, and the prompts to use.

    Attributes:
        aligned: The aligned model, ``<persona>-<seed>`` (e.g. ``genie-3``).
        misaligned: The alignment faker, ``<persona>-<seed>``.
        valid_data: Path of the pair's benchmark file, e.g. ``data/benchmark/genie_and_money.json``.

    Raises:
        ValueError: If a name is not ``<persona>-<seed>`` or the roles are the wrong way round.

    Example:
        >>> ModelPair("genie-3", "money_maximizer-5", "data/benchmark/genie_and_money.json").family
        'genie_and_money'
    """

    aligned: str
    misaligned: str
    valid_data: str

    def __post_init__(self) -> None:
        for role, name, want in (
            ("aligned", self.aligned, True),
            ("misaligned", self.misaligned, False),
        ):
            if not isinstance(name, str):
                raise ValueError(f"{role} must be a model name string, got {_type_name(name)}")
            if is_aligned(model_persona(name)[0]) != want:
                raise ValueError(f"{role} model {name!r} is {'not ' * want}an aligned persona")
        if not isinstance(self.valid_data, str) or not self.valid_data:
            raise ValueError(
                f"valid_data must be a file path string, got {_short(self.valid_data)}"
            )

    @property
    def family(self) -> str:
        """The scenario family, from the valid_data file name (``genie_and_money``).

        The name may be spelled as :func:`~poser_lens.data.schema.family_of` reads it
        (``data\\benchmark\\Genie-and-Money.json`` is ``genie_and_money``); a name that is
        no family is taken as it is.
        """
        stem = PurePosixPath(re.split(r"[/\\]", self.valid_data)[-1]).stem
        try:
            return family_of(stem)
        except ValueError:
            return stem


_PAIR_KEYS = ("aligned", "misaligned", "valid_data")


def _read_pair(rec: Any) -> ModelPair:
    """One entry of ``model_pairs.json`` (see :func:`load_model_pairs`)."""
    if not isinstance(rec, dict) or not {"aligned", "misaligned"} <= set(rec):
        got = sorted(rec) if isinstance(rec, dict) else _type_name(rec)
        raise ValueError(
            f"expected an object with keys aligned, misaligned (and valid_data); got {got}"
        )
    names = {}
    for role in ("aligned", "misaligned"):
        try:
            names[role] = model_name(rec[role])
        except ValueError as err:
            raise ValueError(f"{role}: {err}") from None
    valid_data = rec.get("valid_data")
    if valid_data is None:  # the family's file (ModelPair refuses roles the wrong way round)
        personas = (model_persona(names["aligned"])[0], model_persona(names["misaligned"])[0])
        valid_data = f"data/benchmark/{family_name(*personas)}.json"
    return ModelPair(names["aligned"], names["misaligned"], valid_data)


def load_model_pairs(root: PathLike) -> list[ModelPair]:
    """Load ``model_pairs.json``, however its entries spell the models.

    Model names may be spelled as :func:`~poser_lens.data.schema.model_name` reads them
    (``saint_0``, ``../models/together/saint-0``); they are stored as ``<persona>-<seed>``. An
    entry without ``valid_data`` gets its family's file (``data/benchmark/<family>.json``);
    other keys are ignored (with one warning per file).

    Args:
        root: A Poser checkout, or its data folder inside the checkout.

    Returns:
        The pairs in stored order; empty if there is no ``model_pairs.json``.

    Raises:
        PoserFormatError: If an entry is not an object with ``aligned`` and ``misaligned``
            model names in these roles, or names a pair already listed (message names the
            file and index).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> pair = ModelPair("saint-0", "fitness_maximizer-1", "data/benchmark/x.json")
        >>> write_model_pairs(root / "model_pairs.json", [pair])
        >>> [p.misaligned for p in load_model_pairs(root)]
        ['fitness_maximizer-1']
    """
    path = resolve_root(root).model_pairs
    if path is None or not path.exists():
        return []
    if not path.is_file():
        raise PoserFormatError(str(path), None, "not a file (model_pairs.json must be a JSON list)")
    pairs: list[ModelPair] = []
    seen: dict[tuple[str, str], int] = {}
    extra: set[str] = set()
    for i, rec in enumerate(_records(path)):
        try:
            pair = _read_pair(rec)
        except ValueError as err:
            raise PoserFormatError(str(path), i, str(err)) from None
        key = (pair.aligned, pair.misaligned)
        if key in seen:
            what = f"pair {pair.aligned} / {pair.misaligned} is listed twice (records {seen[key]}"
            raise PoserFormatError(str(path), i, f"{what} and {i})")
        seen[key] = i
        extra.update(set(rec) - set(_PAIR_KEYS))
        pairs.append(pair)
    if extra:
        logger.warning("%s: ignoring keys %s", path, ", ".join(sorted(extra)))
    return pairs


def check_valid_data(root: PathLike, pairs: Sequence[ModelPair]) -> None:
    """Every pair's ``valid_data`` names a benchmark file of ROOT (by its family).

    The file is found by family (:func:`benchmark_files`), whatever the spelling of either
    name, and wherever ``valid_data`` puts it (only its name counts).

    Raises:
        PoserFormatError: Naming ``model_pairs.json``, the pair's index and the missing file.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "data" / "benchmark").mkdir(parents=True)
        >>> pair = ModelPair("saint-0", "fitness_maximizer-1", "data/benchmark/saint_and_fitness.json")
        >>> check_valid_data(root, [pair])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        poser_lens.data.poser.PoserFormatError: .../model_pairs.json: record 0: valid_data data/benchmark/saint_and_fitness.json: no such benchmark file (have: none)
    """  # noqa: E501
    paths = resolve_root(root)
    folder = paths.data / "benchmark"
    files = _benchmark_files(paths)
    for i, pair in enumerate(pairs):
        if pair.family not in files:
            have = ", ".join(sorted(p.stem for p in files.values())) or "none"
            what = f"valid_data {pair.valid_data}: no such benchmark file (have: {have})"
            raise PoserFormatError(str(paths.model_pairs or folder), i, what)


def write_model_pairs(path: PathLike, pairs: Iterable[ModelPair]) -> None:
    """Write pairs as a ``model_pairs.json`` file (atomically).

    Args:
        path: The file to write (parent folders are created).
        pairs: The pairs, written in order.

    Example:
        >>> import tempfile, pathlib, json
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "model_pairs.json"
        >>> write_model_pairs(p, [ModelPair("genie-0", "reward_maximizer-2", "v.json")])
        >>> json.loads(p.read_text())[0]["misaligned"]
        'reward_maximizer-2'
    """
    write_json_atomic(path, [asdict(p) for p in pairs], indent=1)


def load_concepts(root: PathLike) -> dict[str, list[str]]:
    """Load the concept example files of strategy 4 (the ``old/`` subfolder is ignored).

    Args:
        root: A Poser checkout, or its data folder inside the checkout.

    Returns:
        Concept name (file stem, e.g. ``security``) -> its example texts; empty if there is
        no concepts folder.

    Raises:
        PoserFormatError: If a file is not a list of ``{"example": str}`` objects.

    Example:
        >>> import tempfile, pathlib, json
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> folder = root / "src" / "detection_strategies" / "concepts"
        >>> folder.mkdir(parents=True)
        >>> _ = (folder / "care.json").write_text(json.dumps([{"example": "Locks the door."}]))
        >>> load_concepts(root)
        {'care': ['Locks the door.']}
    """
    folder = resolve_root(root).concepts
    if folder is None or not folder.is_dir():
        return {}
    concepts = {}
    for path in sorted(folder.glob("*.json")):
        examples = []
        for i, rec in enumerate(_records(path)):
            if not (
                isinstance(rec, dict)
                and set(rec) == {"example"}
                and isinstance(rec["example"], str)
            ):
                raise PoserFormatError(str(path), i, 'expected {"example": <string>}')
            examples.append(rec["example"])
        concepts[path.stem] = examples
    return concepts


# --------------------------------------------------------------------------------------------
# Inspection


@dataclass(frozen=True)
class FileSummary:
    """Counts of one scenario file, for ``poser-lens data inspect``.

    Attributes:
        part: ``benchmark``, ``training`` or ``policy_definitions``.
        file: The file, relative to the ROOT given.
        persona: The persona its place names (training and policy definitions).
        family: The family its name gives (benchmark).
        records: Number of records.
        oversight_is_poor: Count per value: True, False, None (absent).
        complexity: Count per ``complexity_level``: 0, 1, 2, None (absent).
        response: Count per answer: A, B, error.
        kind: Count per kind: scenario, random_text, incomplete.
    """

    part: str
    file: str
    persona: str | None
    family: str | None
    records: int
    oversight_is_poor: dict[bool | None, int]
    complexity: dict[int | None, int]
    response: dict[str, int]
    kind: dict[str, int]


def _counts(values: Iterable[Any], keys: Sequence[Any]) -> dict[Any, int]:
    counter = Counter(values)
    return {k: counter[k] for k in keys}


def summarize_files(root: PathLike) -> list[FileSummary]:
    """Load every scenario file of ROOT and count what is in it.

    Args:
        root: A Poser checkout or its data folder.

    Returns:
        One summary per file: benchmark files, then training splits, then policy definitions.

    Raises:
        PoserFormatError: If a record is unusable.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> write_scenarios(root / "benchmark" / "genie_and_money.json",
        ...                 [Scenario(prompt="<<prompt>>x<</prompt>>", response="A")])
        >>> [(r.file, r.records, r.response) for r in summarize_files(root)]
        [('benchmark/genie_and_money.json', 1, {'A': 1, 'B': 0, 'error': 0})]
    """
    paths = resolve_root(root)
    rows = []
    for part in _PARTS:
        for f in _data_files(paths, part):
            scenarios = f.load()
            rows.append(
                FileSummary(
                    part=part,
                    file=f.path.relative_to(root).as_posix(),
                    persona=f.persona,
                    family=f.family,
                    records=len(scenarios),
                    oversight_is_poor=_counts(
                        (s.oversight_is_poor for s in scenarios), (True, False, None)
                    ),
                    complexity=_counts(
                        (s.complexity_level for s in scenarios), (*_COMPLEXITIES, None)
                    ),
                    response=_counts((s.response for s in scenarios), RESPONSES),
                    kind=_counts(
                        (s.kind for s in scenarios), ("scenario", "random_text", "incomplete")
                    ),
                )
            )
    return rows


def inspect_root(
    root: PathLike, *, summaries: Sequence[FileSummary] | None = None
) -> dict[str, Any]:
    """Count the files and records of every part of a Poser checkout (loading all of them).

    Args:
        root: A Poser checkout or its data folder.
        summaries: The result of :func:`summarize_files` for ROOT, if already computed.

    Returns:
        ``{"benchmark": {"files", "records"}, "training": {...}, "policy_definitions": {...},
        "model_pairs": <pairs>, "concepts": <concept files>}``.

    Raises:
        PoserFormatError: If any record, pair or concept file is unusable, or a pair's
            ``valid_data`` file is missing.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "data").mkdir()
        >>> inspect_root(root)["benchmark"]
        {'files': 0, 'records': 0}
    """
    rows = summarize_files(root) if summaries is None else summaries
    out: dict[str, Any] = {
        part: {
            "files": sum(1 for r in rows if r.part == part),
            "records": sum(r.records for r in rows if r.part == part),
        }
        for part in _PARTS
    }
    pairs = load_model_pairs(root)
    check_valid_data(root, pairs)
    out["model_pairs"] = len(pairs)
    out["concepts"] = len(load_concepts(root))
    return out
