"""Poser's six detection strategies and our extra detectors, registered by name.

Each strategy is a short file composing the primitives (hooks, activations, probes, readout,
patching, adapters): a config dataclass, ``score_model`` (one model, one family's valid
prompts) and ``margin`` (which model of a pair looks like the faker). See
:mod:`poser_lens.strategies.base`. S1 and S2 are one steering sweep
(:mod:`poser_lens.strategies.steering`).

Example:
    >>> "s2_noise" in STRATEGY_NAMES and get_strategy("random").name
    'random'
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

from poser_lens.config import OneOf
from poser_lens.strategies.base import ModelContext, Strategy, check_valid

#: Registry name -> module (under ``poser_lens.strategies``) and class name, in report order.
_REGISTRY: dict[str, tuple[str, str]] = {
    "s1_belief": ("s1_belief", "BeliefStrategy"),
    "s2_noise": ("s2_noise", "NoiseStrategy"),
    "s3_lora": ("s3_learning_speed", "LoraSpeedStrategy"),
    "s3_full": ("s3_learning_speed", "FullSpeedStrategy"),
    "s4_concepts": ("s4_concepts", "ConceptStrategy"),
    "s5_decision_speed": ("s5_decision_speed", "DecisionSpeedStrategy"),
    "s6_attention": ("s6_attentiveness", "AttentionStrategy"),
    "s6_saliency": ("s6_attentiveness", "SaliencyStrategy"),
    "s6_counterfactual": ("s6_attentiveness", "CounterfactualStrategy"),
    "patching": ("oversight_patching", "PatchingStrategy"),
    "defection_probe": ("defection_probe", "DefectionProbeStrategy"),
    "weight_noise": ("weight_noise", "WeightNoiseStrategy"),
    "confidence_baseline": ("baselines", "ConfidenceBaseline"),
    "random": ("baselines", "RandomBaseline"),
    "ensemble": ("ensemble", "EnsembleStrategy"),
}

STRATEGY_NAMES: tuple[str, ...] = tuple(_REGISTRY)
#: A setting that names a strategy: one of :data:`STRATEGY_NAMES`.
StrategyName = Annotated[str, OneOf(*STRATEGY_NAMES, what="strategy")]


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name``.

    Raises:
        ValueError: for an unknown name (listing the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(f"poser_lens.strategies.{module}"), cls)


def get_strategy(name: str, config: Any = None, **changes: Any) -> Strategy:
    """An instance of the strategy ``name`` with its default config (or ``config``/changes).

    Example:
        >>> get_strategy("s2_noise").paper_accuracy
        0.98
    """
    return strategy_class(name)(config, **changes)


__all__ = [
    "STRATEGY_NAMES",
    "ModelContext",
    "Strategy",
    "StrategyName",
    "check_valid",
    "get_strategy",
    "strategy_class",
]
