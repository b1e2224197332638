"""The poser testbed: Poser's own LLaMA-13B checkpoints and data from local folders.

Checkpoint folders are found under the models folder at any depth, however they spell the
model (:func:`poser_model_folders`): ``DIR/saint-0``, ``DIR/models/together/saint-0`` and
``DIR/models/saint_fix/retrained/saint_0`` are all ``saint-0``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poser_lens._io import fingerprint
from poser_lens.data.concepts import concept_sets
from poser_lens.data.poser import (
    benchmark_files,
    check_valid_data,
    load_benchmark,
    load_model_pairs,
    resolve_root,
)
from poser_lens.data.schema import Scenario, model_name, model_spellings
from poser_lens.models.hf import TOKENIZER_FILES, free_memory, is_hf_folder, load_hf_folder
from poser_lens.testbeds.base import Testbed, TestbedConfig, model_families, select_pairs

#: How deep below the models folder checkpoint folders are looked for.
MAX_DEPTH = 6


def poser_model_folders(models_dir: str | Path) -> dict[str, list[Path]]:
    """Model name -> the HF checkpoint folders under ``models_dir`` that hold it.

    A checkpoint folder (``config.json`` with a ``model_type``) counts when its name spells a
    model (:func:`~poser_lens.data.schema.model_name`: ``saint-0``, ``saint_0``), at any depth
    down to :data:`MAX_DEPTH` (``models_dir`` itself included); hidden folders and the insides
    of checkpoint folders are not searched.

    Example:
        >>> import tempfile, pathlib, json
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> folder = root / "models" / "saint_fix" / "retrained" / "saint_0"
        >>> folder.mkdir(parents=True)
        >>> _ = (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
        >>> {n: [f.relative_to(root).as_posix() for f in fs]
        ...  for n, fs in poser_model_folders(root).items()}
        {'saint-0': ['models/saint_fix/retrained/saint_0']}
    """
    found: dict[str, list[Path]] = {}

    def add(folder: Path) -> bool:
        if not is_hf_folder(folder):
            return False
        with contextlib.suppress(ValueError):  # a checkpoint that is no Poser model
            found.setdefault(model_name(folder.name), []).append(folder)
        return True

    def visit(folder: Path, depth: int) -> None:
        try:
            subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for sub in subs:
            if not add(sub) and depth < MAX_DEPTH:
                visit(sub, depth + 1)

    root = Path(models_dir)
    if not add(root):
        visit(root, 1)
    return found


def _parts(path: str) -> list[str]:
    """The components of a path spelled with ``/`` or ``\\`` (no ``.``, ``..``), lowercase."""
    return [p.lower() for p in re.split(r"[/\\]", path) if p not in ("", ".", "..")]


def _closest(folders: Sequence[Path], root: Path, spelling: str) -> list[Path]:
    """The folders whose path ends most like ``spelling`` (a ``probs`` key's path)."""
    want = _parts(spelling)[:-1][::-1]

    def shared(folder: Path) -> int:
        have = _parts(folder.relative_to(root).as_posix())[:-1][::-1]
        n = 0
        while n < min(len(have), len(want)) and have[n] == want[n]:
            n += 1
        return n

    best = max(map(shared, folders))
    return [f for f in folders if shared(f) == best]


def poser_model_folder(
    models_dir: str | Path,
    name: str,
    *,
    spelling: str | None = None,
    folders: Mapping[str, Sequence[Path]] | None = None,
) -> Path:
    """The checkpoint folder of a Poser model under ``models_dir`` (:func:`poser_model_folders`).

    Where several folders hold the model (``models/together/saint-0`` and
    ``models/saint_fix/retrained/saint_0``), the one whose path ends like ``spelling`` (the
    model's key in the benchmark's ``probs``: the model that was measured) is taken.

    Args:
        models_dir: The models folder.
        name: The model, ``<persona>-<seed>`` (or any spelling of it).
        spelling: The model's ``probs`` key, to choose among several folders.
        folders: The result of :func:`poser_model_folders` for ``models_dir``, if known.

    Raises:
        FileNotFoundError: Naming the model and the folder searched, if no folder holds it.
        ValueError: Naming the model and the folders, if several hold it and ``spelling``
            does not choose one.

    Example:
        >>> import tempfile
        >>> poser_model_folder(tempfile.mkdtemp(), "saint-0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: model 'saint-0': no checkpoint folder under ... (looked for saint-0 or saint_0 at any depth, e.g. .../models/together/saint-0)
    """  # noqa: E501
    root = Path(models_dir)
    name = model_name(name)
    found = list((folders if folders is not None else poser_model_folders(root)).get(name, []))
    if len(found) > 1 and spelling is not None:
        found = _closest(found, root, spelling)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"model {name!r}: no checkpoint folder under {root} (looked for {name} or "
            f"{name.replace('-', '_')} at any depth, e.g. {root / 'models' / 'together' / name})"
        )
    raise ValueError(
        f"model {name!r}: {len(found)} checkpoint folders under {root}: "
        f"{', '.join(str(f) for f in found)} (ambiguous: keep one)"
    )


def _tokenizer_dir(name: str, folder: Path, root: Path) -> Path:
    """The tokenizer folder of the checkpoint ``folder`` of model ``name``, found under ``root``.

    The folder itself, else, going up one folder at a time to ``root`` (or one folder above
    the checkpoint, if it is ``root``): a ``tokenizer/`` folder there, else that folder.

    Raises:
        FileNotFoundError: Naming the model and its folder, if none holds tokenizer files.
    """
    candidates, above = [folder], folder
    while above.parent != above and (above != root or above == folder):
        above = above.parent
        candidates += [above / "tokenizer", above]
    for cand in candidates:
        if any((cand / f).is_file() for f in TOKENIZER_FILES):
            return cand
    raise FileNotFoundError(
        f"model {name!r}: no tokenizer for {folder} (looked for {'/'.join(TOKENIZER_FILES)} "
        f"in it and in the folders above it up to {above}, and in their tokenizer/ folders)"
    )


def _probs_spellings(
    valid: Mapping[str, Sequence[Scenario]], files: Mapping[str, Path]
) -> dict[str, str]:
    """Model name -> its ``probs`` key in the first record that has one, per benchmark file."""
    out: dict[str, str] = {}
    for family, scenarios in valid.items():
        found = next(((i, s.probs) for i, s in enumerate(scenarios) if s.probs), None)
        if found is not None:
            where = f"{files.get(family, family)}: record {found[0]}"
            for name, key in model_spellings(found[1], where=where, what="probs keys").items():
                out.setdefault(name, key)
    return out


def check_poser(cfg: TestbedConfig) -> None:
    """What the poser testbed needs, checked in a moment: a models folder and a data folder.

    Raises:
        ValueError: If ``models_dir`` or ``data`` is unset.
        FileNotFoundError: If either is not a folder.
    """
    if cfg.models_dir is None or cfg.data is None:
        raise ValueError("the poser testbed needs models_dir (--models DIR) and data (--data ROOT)")
    if not Path(cfg.models_dir).is_dir():
        raise FileNotFoundError(f"{cfg.models_dir}: no such models folder")
    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"{cfg.data}: no such data folder (give the Poser checkout)")


def poser_testbed(cfg: TestbedConfig, *, progress: bool = True) -> Testbed:
    """Poser's own models: HF checkpoint folders under ``cfg.models_dir``, data from ``cfg.data``.

    The valid prompts are the checkout's benchmark files as they are (Poser already filtered
    them: every model answers them alike) and the pairs its ``model_pairs.json``. Every model of
    the pairs the job takes must have a folder (checked here, before any scoring). Models are
    loaded one at a time in ``cfg.dtype`` on ``cfg.device`` (bfloat16 on a GPU, as Poser)
    without weight processing, and freed after scoring, in one process (whatever the job's
    workers). Strategy 4's concept sets are our generator's (never Poser's benchmark prompts),
    made when ``cfg.concepts``.

    Checkpoint folders are found at any depth under ``cfg.models_dir``
    (:func:`poser_model_folder`); where several hold one model, the one whose path matches
    the model's ``probs`` key in the benchmark is used. The tokenizer is the model folder's
    own, else a ``tokenizer/`` folder beside it or beside a folder above it (up to
    ``cfg.models_dir``), else such a folder itself.

    Raises:
        ValueError: If ``models_dir`` or ``data`` is unset, the data has no pairs or lacks
            a pair's benchmark file, or a model has several checkpoint folders.
        FileNotFoundError: Naming the first model without a checkpoint folder.
    """
    import torch

    check_poser(cfg)
    assert cfg.models_dir is not None and cfg.data is not None
    valid = load_benchmark(cfg.data)
    pairs = load_model_pairs(cfg.data)
    if not pairs:
        raise ValueError(f"{cfg.data}: no model_pairs.json with pairs (give the Poser checkout)")
    check_valid_data(cfg.data, pairs)
    models_dir = Path(cfg.models_dir)
    index = poser_model_folders(models_dir)
    spellings = _probs_spellings(valid, benchmark_files(cfg.data))
    folders = {}
    for name in model_families(select_pairs(pairs, cfg)):
        folder = poser_model_folder(models_dir, name, spelling=spellings.get(name), folders=index)
        folders[name] = (folder, _tokenizer_dir(name, folder, models_dir))
    device = cfg.device

    def load(name: str, dtype: str | None = None) -> tuple[Any, Any]:
        if name not in folders:
            folder = poser_model_folder(models_dir, name, spelling=spellings.get(name))
            folders[name] = (folder, _tokenizer_dir(name, folder, models_dir))
        folder, tokenizer = folders[name]
        as_dtype = getattr(torch, dtype or cfg.dtype)
        return load_hf_folder(folder, device=device, dtype=as_dtype, tokenizer=tokenizer, name=name)

    place = f"{Path(cfg.models_dir).resolve()}|{Path(cfg.data).resolve()}"
    return Testbed(
        valid=valid,
        pairs=pairs,
        concepts=concept_sets(cfg.seed) if cfg.concepts else {},
        load=load,
        info={
            "models_dir": str(Path(cfg.models_dir).resolve()),
            "data": str(Path(cfg.data).resolve()),
            "zoo_key": "poser-" + hashlib.sha256(place.encode()).hexdigest()[:10],
            # The 13B weights are too large to hash on every run: the benchmark only.
            "fingerprint": {"benchmark": fingerprint(resolve_root(cfg.data).data / "benchmark")},
            "valid_prompts": {fam: len(v) for fam, v in sorted(valid.items())},
        },
        release=free_memory,
        max_workers=1,
    )
