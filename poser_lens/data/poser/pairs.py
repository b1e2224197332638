"""The aligned/faker model pairs of a Poser checkout (``model_pairs.json``).

:class:`ModelPair` is one pair; :func:`load_model_pairs` and :func:`write_model_pairs` read and
write the file, :func:`check_valid_data` checks that every pair's benchmark file exists. Model
names are read however the release spells them
(:func:`~poser_lens.data.schema.model_name`: ``saint_0``, ``../models/together/saint-0``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from poser_lens._io import write_json_atomic
from poser_lens.data.poser.layout import _benchmark_files, resolve_root
from poser_lens.data.poser.records import (
    PathLike,
    PoserFormatError,
    _records,
    _short,
    _type_name,
)
from poser_lens.data.schema import family_name, family_of, is_aligned, model_name, model_persona

# Under the package's name (``poser_lens.data.poser``), as before the module was split.
logger = logging.getLogger(__package__)


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
        poser_lens.data.poser.records.PoserFormatError: .../model_pairs.json: record 0: valid_data data/benchmark/saint_and_fitness.json: no such benchmark file (have: none)
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
