"""poser_lens: catch alignment-faking language models from their internals.

A re-implementation of the Poser benchmark (Clymer, Juang and Field, 2024) and its six
detection strategies on TransformerLens. The names a researcher needs are here, one import
away (``import poser_lens as pl``):

========================  ==================================================================
models and testbeds       :func:`load_model`, :func:`notebook_zoo`, :class:`ZooConfig`,
                          :class:`TestbedConfig`, :func:`make_testbed`, :func:`select_pairs`,
                          :func:`model_families`
primitives (modules)      :mod:`hooks <poser_lens.hooks>` (``pl.hooks.AddNoise``,
                          ``pl.hooks.hook_name``), :mod:`probes <poser_lens.probes>`,
                          :mod:`readout <poser_lens.readout>`,
                          :mod:`activations <poser_lens.activations>`,
                          :mod:`patching <poser_lens.patching>`,
                          :mod:`adapters <poser_lens.adapters>`
readout                   :func:`encode`, :class:`AnswerIds`, :func:`answer_readout`
strategies                :func:`get_strategy`, :data:`STRATEGY_NAMES`, :class:`ModelContext`,
                          :mod:`strategies <poser_lens.strategies>`
run and evaluate          :class:`RunConfig`, :func:`run` (the main job, figures and report
                          included), :class:`RunDir`, :func:`evaluate`
figures                   :func:`make_figures`, :mod:`figures <poser_lens.figures>`
========================  ==================================================================

Importing this package is cheap: it imports neither torch nor TransformerLens; each name
imports its module on first use. The command line is :mod:`poser_lens.cli`.

Example:
    >>> import poser_lens as pl
    >>> pl.__version__
    '0.1.0'
    >>> pl.hooks.hook_name("resid_post", 1, 2)
    'blocks.1.hook_resid_post'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> (module, attribute); imported on first use.
_NAMES: dict[str, tuple[str, str]] = {
    "load_model": ("poser_lens.models", "load_model"),
    "notebook_zoo": ("poser_lens.models.zoo", "notebook_zoo"),
    "ZooConfig": ("poser_lens.models.zoo", "ZooConfig"),
    "TestbedConfig": ("poser_lens.testbeds", "TestbedConfig"),
    "make_testbed": ("poser_lens.testbeds", "make_testbed"),
    "select_pairs": ("poser_lens.testbeds", "select_pairs"),
    "model_families": ("poser_lens.testbeds", "model_families"),
    "encode": ("poser_lens.readout", "encode"),
    "AnswerIds": ("poser_lens.readout", "AnswerIds"),
    "answer_readout": ("poser_lens.readout", "answer_readout"),
    "get_strategy": ("poser_lens.strategies", "get_strategy"),
    "STRATEGY_NAMES": ("poser_lens.strategies", "STRATEGY_NAMES"),
    "ModelContext": ("poser_lens.strategies.base", "ModelContext"),
    "RunConfig": ("poser_lens.runner", "RunConfig"),
    "run": ("poser_lens.pipeline", "main_job"),
    "RunDir": ("poser_lens.runs", "RunDir"),
    "evaluate": ("poser_lens.evaluation", "evaluate"),
    "make_figures": ("poser_lens.figures", "make_figures"),
}

#: Submodules reachable as attributes (``pl.hooks``), imported on first use.
_MODULES = (
    "activations",
    "adapters",
    "data",
    "evaluation",
    "figures",
    "hooks",
    "models",
    "patching",
    "pipeline",
    "probes",
    "readout",
    "stats",
    "strategies",
    "testbeds",
)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        module, attr = _NAMES[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _MODULES:
        value = importlib.import_module(f"poser_lens.{name}")
    else:
        raise AttributeError(f"module 'poser_lens' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES, *_MODULES])


__all__ = ["__version__", *_NAMES, *_MODULES]
