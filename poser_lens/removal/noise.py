"""The S2 noise injected while training (``sft_noise``), scaled as S2 scales it.

Unit noise of S2's headline kind times the norm of the model's S1/S2 contrast direction (mean
over its families) times a coefficient chosen as S2 chooses it, label-free, from the model's
own P(A)+P(B) curve; a fresh draw every step, from seeds disjoint from S2's detection draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from jaxtyping import Int
from torch import Tensor

from poser_lens.hooks import AddNoise, NoiseKind, hook_name
from poser_lens.removal.config import RemovalConfig
from poser_lens.strategies.base import Strategy
from poser_lens.strategies.s2_noise import NoiseScore, NoiseStrategy

#: Noise seeds of training start here (S2's detection draws use small seeds).
TRAIN_NOISE_SEED = 1_000_000


@dataclass(frozen=True)
class NoiseSpec:
    """The S2 noise injected while training (``sft_noise``).

    Attributes:
        layer: Block whose ``hook_resid_post`` gets the noise (S2's headline layer).
        norm: Norm of coefficient 1 (the S1/S2 contrast direction's norm).
        coeff: Coefficient (S2's label-free choice unless fixed).
        kind: Noise kind (S2's headline: ``uniform``).
        seed: Seed of step 0's draw; step ``t`` uses ``seed + t``.
    """

    layer: int
    norm: float
    coeff: float
    kind: NoiseKind = "uniform"
    seed: int = TRAIN_NOISE_SEED

    def hooks(self, d_model: int, step: int, last: Int[Tensor, " batch"]) -> list[tuple[str, Any]]:
        """The hook of one training step: a fresh draw at each row's last token.

        Example:
            >>> import torch
            >>> spec = NoiseSpec(layer=1, norm=2.0, coeff=1.5)
            >>> [(name, h.norm * h.coeff) for name, h in spec.hooks(8, 0, torch.tensor([3]))]
            [('blocks.1.hook_resid_post', 3.0)]
        """
        hook = AddNoise(
            d=d_model,
            kind=self.kind,
            norm=self.norm,
            coeff=self.coeff,
            seed=self.seed + step,
            positions="last",
            last=last,
        )
        return [(hook_name("resid_post", self.layer), hook)]


def noise_spec(s2: Strategy, scores: Mapping[str, NoiseScore], cfg: RemovalConfig) -> NoiseSpec:
    """S2's noise for one model from its S2 scores (family -> score) before training.

    S2 says which noise it applies (:meth:`~poser_lens.strategies.s2_noise.NoiseStrategy.
    headline_noise`): its headline block and kind, the mean contrast-direction norm there over
    the model's families, and its label-free coefficient from the model's own mean P(A)+P(B)
    curve, unless ``cfg.noise_coeff`` fixes it.
    """
    if not isinstance(s2, NoiseStrategy):
        raise TypeError(f"the training noise is S2's; got the strategy {s2.name!r}")
    noise = s2.headline_noise(scores)
    coeff = noise.coeff if cfg.noise_coeff is None else cfg.noise_coeff
    return NoiseSpec(
        layer=noise.layer,
        norm=noise.norm,
        coeff=float(coeff),
        kind=cast("NoiseKind", noise.kind),
        seed=TRAIN_NOISE_SEED + 1000 * cfg.seed,
    )
