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

from poser_lens._io import read_json
from poser_lens.data.concepts import concept_sets
from poser_lens.data.generator import generate
from poser_lens.data.poser import load_benchmark, load_model_pairs
from poser_lens.models.smol_zoo import SmolZooConfig, default_smol_zoo
from poser_lens.models.zoo import ZooConfig
from poser_lens.models.zoo_base import ZooSpec
from poser_lens.testbeds.base import Testbed, TestbedConfig


def zoo_testbed(zoo: ZooSpec, root: Path, cfg: TestbedConfig) -> Testbed:
    """The testbed of the built zoo ``zoo`` at ``root``; models load on ``cfg``'s device."""
    import torch

    poser = root / "poser"
    device, dtype = cfg.device, getattr(torch, cfg.dtype)

    def load(name: str) -> tuple[Any, Any]:
        return zoo.load(root, name, device=device, dtype=dtype)

    return Testbed(
        valid=load_benchmark(poser),
        pairs=load_model_pairs(poser),
        concepts=concept_sets(generate(zoo.generator)),  # type: ignore[attr-defined]
        load=load,
        info={
            "zoo": str(root),
            "zoo_key": zoo.key(),
            "benchmark": read_json(poser / "benchmark_report.json"),
        },
    )


def tiny_testbed(cfg: TestbedConfig, *, progress: bool = True) -> Testbed:
    """The embedded tiny zoo, built on first use.

    ``cfg.zoo_dir`` if it holds a built zoo, else the zoo of ``cfg``'s settings (``zoo_config``
    file, ``seeds``), built into ``cfg.zoo_dir`` or reused from the cache.
    """
    if cfg.zoo_dir is not None and (Path(cfg.zoo_dir) / "zoo.json").exists():
        root = Path(cfg.zoo_dir)
        zoo = ZooConfig.read(root)
    else:
        zoo = ZooConfig.from_file(cfg.zoo_config) if cfg.zoo_config else ZooConfig()
        zoo = replace(zoo, seeds=cfg.seeds)
        root = zoo.build(cfg.zoo_dir, progress=progress)
    return zoo_testbed(zoo, root, cfg)


def smol_testbed(cfg: TestbedConfig, *, progress: bool = True) -> Testbed:
    """The smol zoo (SmolLM2-135M persona adapters) of `poser-lens zoo build --testbed smol`.

    Uses ``cfg.zoo_dir`` if given, else the smol zoo shipped with poser_lens
    (:func:`~poser_lens.models.smol_zoo.default_smol_zoo`); every model built in it takes part.

    Raises:
        ValueError: If the zoo is not built.
    """
    root = Path(cfg.zoo_dir) if cfg.zoo_dir is not None else default_smol_zoo()
    if not SmolZooConfig.is_built(root):
        raise ValueError(f"{root}: no smol zoo (build it: poser-lens zoo build --testbed smol)")
    return zoo_testbed(SmolZooConfig.read(root), root, cfg)
