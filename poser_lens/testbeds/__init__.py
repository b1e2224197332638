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
    check_model_names,
    model_families,
    select_pairs,
)
from poser_lens.testbeds.poser import poser_model_folder, poser_testbed
from poser_lens.testbeds.zoos import smol_testbed, tiny_testbed, zoo_testbed

#: Testbed name -> the function that makes it.
TESTBEDS: dict[str, Callable[..., Testbed]] = {
    "tiny": tiny_testbed,
    "smol": smol_testbed,
    "poser": poser_testbed,
}


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
    "TESTBED_NAMES",
    "HasTestbedConfig",
    "ModelNames",
    "Testbed",
    "TestbedConfig",
    "TestbedName",
    "check_model_names",
    "make_testbed",
    "model_families",
    "poser_model_folder",
    "poser_testbed",
    "select_pairs",
    "smol_testbed",
    "tiny_testbed",
    "zoo_testbed",
]
