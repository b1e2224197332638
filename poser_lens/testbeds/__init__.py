"""Testbeds: where a job gets its models, prompts and pairs (below every job).

One seam for three testbeds, each a function ``TestbedConfig -> Testbed``:

* ``tiny`` (:func:`~poser_lens.testbeds.zoos.tiny_testbed`, default): the embedded zoo of
  small hooked transformers, built on first use;
* ``smol`` (:func:`~poser_lens.testbeds.zoos.smol_testbed`): SmolLM2-135M persona adapters;
* ``poser`` (:func:`~poser_lens.testbeds.poser.poser_testbed`): Poser's own checkpoints.

Example:
    >>> sorted(TESTBEDS)
    ['poser', 'smol', 'tiny']
"""

from __future__ import annotations

from collections.abc import Callable

from poser_lens.testbeds.base import (
    TESTBED_NAMES,
    HasTestbedConfig,
    ModelNames,
    Testbed,
    TestbedConfig,
    TestbedName,
    as_testbed_config,
    check_device,
    check_model_names,
    model_families,
    select_pairs,
)
from poser_lens.testbeds.poser import (
    check_poser,
    poser_model_folder,
    poser_model_folders,
    poser_testbed,
)
from poser_lens.testbeds.zoos import (
    check_smol,
    check_tiny,
    smol_precision,
    smol_testbed,
    tiny_testbed,
    zoo_testbed,
)

#: Testbed name -> the function that makes it.
TESTBEDS: dict[str, Callable[..., Testbed]] = {
    "tiny": tiny_testbed,
    "smol": smol_testbed,
    "poser": poser_testbed,
}
#: Testbed name -> the function that checks, in a moment, what making it needs.
TESTBED_CHECKS: dict[str, Callable[[TestbedConfig], None]] = {
    "tiny": check_tiny,
    "smol": check_smol,
    "poser": check_poser,
}


def check_testbed(cfg: TestbedConfig | HasTestbedConfig) -> None:
    """Check what making the testbed needs from this machine, before any work is done.

    The device (CUDA present...), and per testbed its folders: a built ``zoo_dir``, a
    readable ``zoo_config`` and a writable cache when the tiny zoo must be built, a built
    smol zoo, the poser models and data folders. Each check takes a moment; a failure is one
    line naming the setting's value.

    Raises:
        ValueError: Naming what is missing (``OSError`` for a missing poser folder).
    """
    cfg = as_testbed_config(cfg)
    check_device(cfg.device)
    TESTBED_CHECKS[cfg.testbed](cfg)


def default_dtype(cfg: TestbedConfig) -> str:
    """The precision models are scored in when a run names none.

    * ``poser`` on a GPU: bfloat16, as Poser;
    * ``smol``: the zoo's precision where the device computes it natively
      (:func:`~poser_lens.testbeds.zoos.smol_precision`), else float32;
    * otherwise float32 (the tiny zoo's published numbers depend on it).

    Example:
        >>> default_dtype(TestbedConfig())
        'float32'
        >>> default_dtype(TestbedConfig(testbed="poser", device="cuda"))
        'bfloat16'
    """
    if cfg.testbed == "poser" and cfg.device.startswith("cuda"):
        return "bfloat16"
    if cfg.testbed == "smol":
        return smol_precision(cfg)
    return "float32"


def make_testbed(cfg: TestbedConfig | HasTestbedConfig, *, progress: bool = True) -> Testbed:
    """The testbed ``cfg`` names (built, loaded and checked; models load on demand).

    ``cfg`` is a :class:`TestbedConfig` or a job config that holds one (a ``RunConfig``).
    """
    import time

    cfg = as_testbed_config(cfg)
    t0 = time.perf_counter()
    testbed = TESTBEDS[cfg.testbed](cfg, progress=progress)
    testbed.build_seconds = time.perf_counter() - t0
    return testbed


__all__ = [
    "TESTBEDS",
    "TESTBED_CHECKS",
    "TESTBED_NAMES",
    "HasTestbedConfig",
    "ModelNames",
    "Testbed",
    "TestbedConfig",
    "TestbedName",
    "check_device",
    "check_model_names",
    "check_testbed",
    "default_dtype",
    "make_testbed",
    "model_families",
    "poser_model_folder",
    "poser_model_folders",
    "poser_testbed",
    "select_pairs",
    "smol_precision",
    "smol_testbed",
    "tiny_testbed",
    "zoo_testbed",
]
