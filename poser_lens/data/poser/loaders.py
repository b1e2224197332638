"""Load the scenario parts of a Poser data folder: benchmark, training, policy definitions.

Each loader takes ROOT as a checkout or its ``data/`` folder
(:func:`~poser_lens.data.poser.layout.resolve_root`) and returns empty containers for an absent
part; file and folder names may use any spelling :mod:`poser_lens.data.poser.layout` reads.
"""

from __future__ import annotations

from poser_lens.data.poser.layout import _benchmark_files, _data_files, _split_name, resolve_root
from poser_lens.data.poser.records import PathLike, load_scenarios
from poser_lens.data.schema import Scenario


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
