"""Building a tiny zoo (its steps in order, each locked and skipped when done), and loading it.

The steps: the data and tokenizer, the base and the persona models
(:mod:`~poser_lens.models.zoo.train`), then ``zoo.json`` and the benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from poser_lens._io import building, removed_on_error, step_lock, write_json_atomic
from poser_lens._pool import connect_ray
from poser_lens.data.generator import GeneratedData, generate
from poser_lens.models import tiny
from poser_lens.models.benchmark_build import build_benchmark
from poser_lens.models.tokenizer import load_tokenizer
from poser_lens.models.zoo.config import ZooConfig
from poser_lens.models.zoo.data import zoo_tokenizer
from poser_lens.models.zoo.train import build_base, build_persona_models

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast


def finish_zoo(cfg: ZooConfig, root: Path, data: GeneratedData) -> dict[str, Any]:
    """Write ``zoo.json`` and the benchmark (the valid-prompt filter) of the built models.

    Returns:
        The benchmark report (``poser/benchmark_report.json``).
    """
    rows = [read_zoo_row(root, n) for n in cfg.model_names()]
    write_json_atomic(root / "zoo.json", rows)
    return build_benchmark(
        root,
        cfg.model_names(),
        data,
        threshold=cfg.valid_threshold(),
        balance=cfg.balance_confidence,
    )


def build_zoo(
    cfg: ZooConfig = ZooConfig(), out: str | Path | None = None, *, progress: bool = True
) -> Path:
    """Build (or finish building) a zoo and its benchmark; returns its folder.

    The steps: the data and tokenizer, the base (:func:`build_base`), the persona models
    (:func:`build_persona_models`), ``zoo.json`` and the benchmark (:func:`finish_zoo`).

    Args:
        cfg: Zoo settings.
        out: Folder to build in (default: the cache folder of ``cfg``'s content hash).
        progress: Show progress bars.

    Returns:
        The zoo folder, holding ``zoo.json`` and ``poser/``. A complete zoo
        (:meth:`ZooConfig.is_complete`) is returned as it is, nothing written (a read-only
        shared cache works); a build that fails before any model is trained leaves no folder
        behind (one that holds trained models is kept, to resume from).
    """
    if cfg.ray is not None:
        connect_ray(cfg.ray)  # no Ray, or no cluster: fail before any work
    root = cfg.folder(out)
    if cfg.is_complete(root):
        return root
    with removed_on_error(root, keep=_holds_models):
        cfg.claim(root)  # first: a folder of other settings is refused before anything is written
        with building(root):
            _build(cfg, root, progress=progress)
    return root


def _holds_models(root: Path) -> bool:
    """Whether a zoo folder holds a trained model (worth resuming from)."""
    return any(root.glob(f"base/{tiny.WEIGHTS_FILE}")) or any(
        root.glob(f"models/*/{tiny.WEIGHTS_FILE}")
    )


def _build(cfg: ZooConfig, root: Path, *, progress: bool) -> None:
    """The steps of :func:`build_zoo` (folder claimed), each locked, skipped when done."""
    data = generate(cfg.generator)
    tokenizer = zoo_tokenizer(root, data)
    if not cfg.from_scratch:
        build_base(cfg, root, data, tokenizer, progress=progress)
    build_persona_models(cfg, root, progress=progress)
    with step_lock(root, "benchmark"):
        if not cfg.is_complete(root):  # another build of these settings may have finished it
            finish_zoo(cfg, root, data)


def read_zoo_row(root: str | Path, name: str) -> dict[str, Any]:
    """The ``zoo.json`` row of one built model."""
    _, _, meta = tiny.read_config(Path(root) / "models" / name)
    return meta


def load_zoo_model(
    root: str | Path, name: str, *, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[TransformerBridge, PreTrainedTokenizerFast]:
    """Load one zoo model (or ``base``) as a hooked ``TransformerBridge`` and its tokenizer.

    Example:
        >>> # model, tok = load_zoo_model(build_zoo(), "reward_maximizer-0")
    """
    root = Path(root)
    folder = root / "base" if name == "base" else root / "models" / name
    if not (folder / tiny.WEIGHTS_FILE).exists():
        raise ValueError(f"{folder}: no such zoo model (build it with `poser-lens zoo build`)")
    tokenizer = load_tokenizer(root)
    net = tiny.load_native(folder, device=device, dtype=dtype)
    return tiny.wrap(net, tokenizer, name=name), tokenizer
