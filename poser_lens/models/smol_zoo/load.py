"""Loading a smol zoo model: the shipped zoo by default, the adapter merged into the base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from poser_lens.models.smol_zoo.config import SHIPPED_SMOL_ZOO, SmolZooConfig


def default_smol_zoo() -> Path:
    """The smol zoo used when none is named: the shipped one (or, without it, the cache's).

    Example:
        >>> default_smol_zoo().name
        'smol'
    """
    if SmolZooConfig.is_built(SHIPPED_SMOL_ZOO):
        return SHIPPED_SMOL_ZOO
    return SmolZooConfig().folder()


def load_smol_zoo_model(
    name: str,
    *,
    zoo: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """A smol zoo model (adapter merged into the base) as ``(TransformerBridge, tokenizer)``.

    Args:
        name: ``<persona>-<seed>`` or ``base``.
        zoo: Zoo folder (default: :func:`default_smol_zoo`, the shipped zoo).
        device: Where to put it.
        dtype: Its dtype.

    Raises:
        ValueError: If the model is not built.
    """
    from poser_lens.models.smol import load_smol

    root = Path(zoo) if zoo is not None else default_smol_zoo()
    if name == "base":
        return load_smol(device=device, dtype=dtype)
    folder = root / "models" / name
    if not (folder / "adapter_model.safetensors").exists():
        raise ValueError(
            f"{folder}: no such smol zoo model (build it with `poser-lens zoo build "
            "--testbed smol`)"
        )
    return load_smol(device=device, dtype=dtype, adapter=folder, name=f"smol:{name}")
