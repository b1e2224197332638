"""Settings of the removal study: the methods and :class:`RemovalConfig` (``removal/config.yaml``).

Example:
    >>> RemovalConfig().steps, RemovalConfig().methods
    (100, ('sft', 'sft_noise'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from poser_lens.config import (
    Config,
    ConfigError,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    OneOf,
    PositiveInt,
)
from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.strategies import StrategyName

#: Removal methods: plain SFT on own answers, and SFT with S2's noise injected.
METHODS: tuple[str, ...] = ("sft", "sft_noise")
#: A removal-method setting: one of :data:`METHODS`.
Method = Annotated[str, OneOf(*METHODS, what="removal method")]


@dataclass(frozen=True)
class RemovalConfig(Config):
    """Settings of the removal study (``removal/config.yaml``).

    Attributes:
        methods: ``sft`` and/or ``sft_noise``.
        steps: Optimiser steps (Poser: 100).
        lr: AdamW learning rate of the body (the zoo's fine-tuning recipe).
        head_lr_scale: Learning-rate multiplier of the unembedding (the zoo's recipe).
        batch_size: Prompts per step.
        warmup: Linear warm-up steps.
        log_every: Evaluate P(aligned) every this many steps (and at the last step).
        n_eval: At most this many held-out misbehaved-on prompts per model for P(aligned).
        n_gap: At most this many held-out scenarios per oversight class for the gap.
        n_test: At most this many held-out test records for the capability.
        noise_coeff: Noise coefficient of ``sft_noise``; None = S2's label-free choice from
            the model's own mass curve.
        fakers: Treat only these fakers (None = every faker of the pairs).
        controls: Also run the controls (aligned models; random labels on fakers).
        control_seeds: Controls on models with seed < this (None = every seed).
        detectors: Strategies re-run on the treated fakers (``s2_noise`` is needed for the
            noise scale and is always scored).
        detector_grid: Score S2 over its whole layer x kind grid (default: only its headline
            layer and noise kind, all the verdict and the noise scale need; 2.5x cheaper).
        seed: Seeds batch order, random labels and training noise.
    """

    methods: Annotated[tuple[Method, ...], NonEmpty()] = METHODS
    steps: PositiveInt = 100
    lr: NonNegativeFloat = 1e-4
    head_lr_scale: NonNegativeFloat = 100.0
    batch_size: PositiveInt = 8
    warmup: NonNegativeInt = 5
    log_every: PositiveInt = 10
    n_eval: PositiveInt = 64
    n_gap: PositiveInt = 100
    n_test: PositiveInt = 100
    noise_coeff: NonNegativeFloat | None = None
    fakers: Annotated[tuple[str, ...], NonEmpty()] | None = None
    controls: bool = True
    control_seeds: PositiveInt | None = 1
    detectors: tuple[StrategyName, ...] = ("s2_noise", "confidence_baseline")
    detector_grid: bool = False
    seed: int = 0

    def check(self) -> None:
        """Every name in ``fakers`` is a faker's, ``<persona>-<seed>``."""
        for i, name in enumerate(self.fakers or ()):
            try:
                aligned = is_aligned(model_persona(name)[0])
            except ValueError as err:
                raise ConfigError(f"fakers[{i}]", str(err)) from None
            if aligned:
                raise ConfigError(f"fakers[{i}]", f"{name!r} is an aligned model, not a faker")
