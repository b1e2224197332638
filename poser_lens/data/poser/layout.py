"""Where the parts of a Poser checkout are, however the release spells their names.

:func:`resolve_root` tells a checkout from its ``data/`` folder (:class:`PoserPaths`);
:func:`benchmark_files` finds the benchmark files by family. The private helpers list the
scenario files of each part (``benchmark``, ``training``, ``policy_definitions``) with what
their place says about them (family, persona, training split), for the loaders of
:mod:`poser_lens.data.poser.loaders` and the summaries of :mod:`poser_lens.data.poser.summary`.

Benchmark file names are read by :func:`~poser_lens.data.schema.family_of`
(``Saint-and-Fitness.json``), persona folders by :func:`~poser_lens.data.schema.persona_name`
(``Truth-Teller``), training splits as ``train-<i>`` or ``train_<i>``. Two files or folders
that stand for one name are refused (one line naming the folder and both).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from poser_lens.data.poser.records import PathLike, PoserFormatError, load_scenarios
from poser_lens.data.schema import Scenario, family_of, persona_name

# Under the package's name (``poser_lens.data.poser``), as before the module was split.
logger = logging.getLogger(__package__)

_PARTS = ("benchmark", "training", "policy_definitions")


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
