"""The poser testbed: Poser's own LLaMA-13B checkpoints and data from local folders."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from poser_lens._io import fingerprint
from poser_lens.data.concepts import concept_sets
from poser_lens.data.poser import check_valid_data, load_benchmark, load_model_pairs, resolve_root
from poser_lens.models.hf import free_memory, is_hf_folder, load_hf_folder
from poser_lens.testbeds.base import Testbed, TestbedConfig, model_families, select_pairs


def poser_model_folder(models_dir: str | Path, name: str) -> Path:
    """The checkpoint folder of a Poser model: ``DIR/<name>`` or ``DIR/models/together/<name>``.

    Raises:
        FileNotFoundError: Naming the model and the folders looked at, if none is an HF
            checkpoint (``config.json`` with a ``model_type``).

    Example:
        >>> import tempfile
        >>> poser_model_folder(tempfile.mkdtemp(), "saint-0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: model 'saint-0': no checkpoint folder .../saint-0 nor .../models/together/saint-0
    """  # noqa: E501
    root = Path(models_dir)
    candidates = [root / name, root / "models" / "together" / name]
    for folder in candidates:
        if is_hf_folder(folder):
            return folder
    raise FileNotFoundError(
        f"model {name!r}: no checkpoint folder {candidates[0]} nor {candidates[1]}"
    )


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

    Raises:
        ValueError: If ``models_dir`` or ``data`` is unset, or the data has no pairs or lacks
            a pair's benchmark file.
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
    models_dir = cfg.models_dir
    for name in model_families(select_pairs(pairs, cfg)):
        poser_model_folder(models_dir, name)
    device = cfg.device

    def load(name: str, dtype: str | None = None) -> tuple[Any, Any]:
        folder = poser_model_folder(models_dir, name)
        as_dtype = getattr(torch, dtype or cfg.dtype)
        return load_hf_folder(folder, device=device, dtype=as_dtype, name=name)

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
