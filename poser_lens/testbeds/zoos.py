"""The tiny and the smol testbeds: a zoo poser_lens builds, through the zoo contract.

Both read a built zoo folder (:class:`~poser_lens.models.zoo_base.ZooSpec`): its benchmark in
Poser's layout (valid prompts, pairs), its generator's concept sets (strategy 4) and its
models. The tiny zoo is built on first use (minutes on a laptop CPU); the smol zoo ships with
poser_lens (``poser-lens zoo build --testbed smol`` rebuilds it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from poser_lens._io import check_writable, read_json
from poser_lens.data.poser import load_benchmark, load_model_pairs
from poser_lens.models.smol_zoo import SmolZooConfig, default_smol_zoo
from poser_lens.models.zoo import ZooConfig
from poser_lens.models.zoo_base import ZooSpec
from poser_lens.testbeds.base import Testbed, TestbedConfig


def zoo_testbed(zoo: ZooSpec, root: Path, cfg: TestbedConfig) -> Testbed:
    """The testbed of the built zoo ``zoo`` at ``root``; models load on ``cfg``'s device."""
    import torch

    poser = root / "poser"
    device = cfg.device

    def load(name: str, dtype: str | None = None) -> tuple[Any, Any]:
        return zoo.load(root, name, device=device, dtype=getattr(torch, dtype or cfg.dtype))

    return Testbed(
        valid=load_benchmark(poser),
        pairs=load_model_pairs(poser),
        concepts=zoo.concepts(),
        load=load,
        info={
            "zoo": str(root),
            # The precision the zoo was trained in, where it has a choice (the smol zoo).
            **({"zoo_precision": zoo.dtype} if isinstance(zoo, SmolZooConfig) else {}),
            "zoo_key": zoo.key(),
            "fingerprint": zoo.fingerprint(root),
            "benchmark": read_json(poser / "benchmark_report.json"),
        },
    )


def _tiny_zoo(cfg: TestbedConfig) -> tuple[ZooConfig, Path, bool]:
    """The tiny zoo of ``cfg``: its settings, its folder, and whether that is ``cfg.zoo_dir``.

    Raises:
        ValueError: If ``cfg.zoo_dir`` holds no built tiny zoo, or the ``zoo_config`` file
            cannot be read (naming the folder or the file).
    """
    if cfg.zoo_dir is not None:
        root = Path(cfg.zoo_dir)
        if not (root / "zoo.json").is_file() or not ZooConfig.is_built(root):
            what = "no such folder" if not root.is_dir() else "no built tiny zoo (no zoo.json)"
            raise ValueError(
                f"zoo folder {root}: {what}; build one with `poser-lens zoo build --out {root}`"
                " or leave --zoo out to use the cached zoo"
            )
        return ZooConfig.read(root), root, True
    zoo = ZooConfig.from_file(cfg.zoo_config) if cfg.zoo_config else ZooConfig()
    zoo = replace(zoo, seeds=cfg.seeds)
    return zoo, zoo.folder(), False


def check_tiny(cfg: TestbedConfig) -> None:
    """What the tiny testbed needs, checked in a moment (before any zoo is built).

    A built ``zoo_dir``, a readable ``zoo_config`` and, when the zoo must be built, a
    writable cache folder.
    """
    zoo, root, given = _tiny_zoo(cfg)
    if not given and not zoo.is_complete(root):
        check_writable(root, "zoo cache folder")


def tiny_testbed(cfg: TestbedConfig, *, progress: bool = True) -> Testbed:
    """The embedded tiny zoo, built on first use.

    ``cfg.zoo_dir`` when given (a built zoo: one that is not fails, naming it), else the zoo
    of ``cfg``'s settings (``zoo_config`` file, ``seeds``), reused from the cache or built
    there.
    """
    zoo, root, given = _tiny_zoo(cfg)
    if not given:
        root = zoo.build(progress=progress)
    return zoo_testbed(zoo, root, cfg)


def _smol_root(cfg: TestbedConfig) -> Path:
    """The smol zoo folder of ``cfg``: ``zoo_dir``, else the shipped zoo.

    Raises:
        ValueError: If the zoo is not built.
    """
    root = Path(cfg.zoo_dir) if cfg.zoo_dir is not None else default_smol_zoo()
    if not SmolZooConfig.is_built(root):
        raise ValueError(f"{root}: no smol zoo (build it: poser-lens zoo build --testbed smol)")
    return root


def check_smol(cfg: TestbedConfig) -> None:
    """What the smol testbed needs: a built smol zoo."""
    _smol_root(cfg)


def smol_precision(cfg: TestbedConfig) -> str:
    """The precision a run scores ``cfg``'s smol zoo in when none is given.

    The zoo's own (its ``dtype``: the precision it was trained and evaluated in, part of its
    key) when this device computes it natively, else float32, which is what a CPU without
    bfloat16 support gets.

    Raises:
        ValueError: If the zoo is not built.
    """
    from poser_lens.models.hf import bfloat16_is_fast

    zoo = SmolZooConfig.read(_smol_root(cfg)).dtype
    if zoo == "bfloat16" and not bfloat16_is_fast(cfg.device):
        return "float32"
    return zoo


def smol_testbed(cfg: TestbedConfig, *, progress: bool = True) -> Testbed:
    """The smol zoo (SmolLM2-135M persona adapters) of `poser-lens zoo build --testbed smol`.

    Uses ``cfg.zoo_dir`` if given, else the smol zoo shipped with poser_lens
    (:func:`~poser_lens.models.smol_zoo.default_smol_zoo`); every model built in it takes part.

    Raises:
        ValueError: If the zoo is not built.
    """
    root = _smol_root(cfg)
    return zoo_testbed(SmolZooConfig.read(root), root, cfg)
