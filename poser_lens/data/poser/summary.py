"""Counts of a Poser checkout's files and records, for ``poser-lens data inspect``.

:func:`summarize_files` loads every scenario file and counts what is in it
(:class:`FileSummary`); :func:`inspect_root` totals them per part and checks the model pairs
and concept files too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from poser_lens.data.poser.concepts import load_concepts
from poser_lens.data.poser.layout import _PARTS, _data_files, resolve_root
from poser_lens.data.poser.pairs import check_valid_data, load_model_pairs
from poser_lens.data.poser.records import _COMPLEXITIES, PathLike
from poser_lens.data.schema import RESPONSES


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
        >>> from poser_lens.data import Scenario, write_scenarios
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
