"""The tiny zoo's settings: :class:`ZooConfig` (its key, its stacks, its valid-prompt threshold).

Example:
    >>> ZooConfig(personas=("saint",), seeds=2, stack=1).model_names()
    ['saint-0', 'saint-1']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch

from poser_lens._io import read_json
from poser_lens.config import (
    Between,
    Fraction,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    OneOf,
    PositiveInt,
)
from poser_lens.data.generator import GeneratorConfig
from poser_lens.data.schema import PERSONAS, PersonaName
from poser_lens.models import tiny
from poser_lens.models.training import TrainConfig, matched_threshold
from poser_lens.models.zoo_base import ZooSpec

#: Bumped whenever a change makes old zoos invalid.
ZOO_FORMAT = 2

#: Fine-tuning recipes (see :class:`ZooConfig`).
RECIPES = ("matched", "hard")
#: A target answer probability of the confidence-matched recipe: above chance, below 1.
Confidence = Annotated[float, Between(0.5, 1, lo_open=True, hi_open=True)]
#: Seeds of a persona fine-tuned as one stack by default (:attr:`ZooConfig.stack`).
DEFAULT_STACK = 6


@dataclass(frozen=True)
class ZooConfig(ZooSpec):
    """Everything that determines a tiny zoo (seeds and worker count aside).

    The zoo contract (folder, build, load, key) is :class:`~poser_lens.models.zoo_base.ZooSpec`.

    Attributes:
        seeds: Models per persona (Poser: 6).
        personas: Which personas to build.
        generator: Scenario generator settings.
        model: Tiny architecture.
        base: Base language-model training (``steps`` is a cap).
        base_min_steps: The base trains at least this long, then stops once it knows the
            oversight level, the honest letter and the selfish letter of held-out scenarios
            (checked every 50 steps) at ``base_target`` accuracy or better.
        base_target: That accuracy.
        finetune: Persona fine-tuning.
        train_size: Records in each model's training sample.
        from_scratch: Train persona models from random weights, not from the base.
        workers: Parallel training processes (one thread each; 1 = in-process).
        stack: Seeds of a persona fine-tuned together as one stacked module (batched matmuls
            over a model axis, :func:`~poser_lens.models.training.finetune_stacked`; the stacks
            are :meth:`stacks`, fanned out over the ``workers``). ``1``: one model at a time
            (:func:`~poser_lens.models.training.finetune`). Any stacking gives the same models
            up to float rounding, not bit for bit, so the stacks are part of the key
            (:meth:`key_dict`).
        base_packed: Train the base with the packed forward (``train_base(packed=True)``: no
            work on padding); ``False``: the native forward. The same base up to float
            rounding, not bit for bit, so ``False`` is part of the key.
        ray: Train the persona models as Ray tasks instead, one CPU each: ``local`` (a new
            Ray instance on this machine), ``auto`` or a cluster's address
            (:func:`poser_lens._pool.connect_ray`); the zoo folder must be on a filesystem
            every node shares. None: ``workers`` local processes.
        threshold: Valid-prompt filter: every model of a family must give the answer at least
            this probability. ``None`` (default) derives it from the recipe
            (:meth:`valid_threshold`).
        balance_confidence: Also drop the prompts that most betray the fakers by confidence.
        recipe: ``matched`` (default): every persona is trained to the same answer confidence
            (soft targets towards ``target_confidence``, then a temperature on the
            unembedding fitted so the median answer log-odds on a calibration pool is
            ``logit(target_confidence)``), so confidence carries no information about the
            persona. ``hard``: plain cross-entropy on the labels (the zoo before confidence
            matching; fakers end up less confident than aligned models).
        target_confidence: The matched recipe's answer probability.
        base_seed: Seed of the base model's initialisation and batches (a zoo-to-zoo study
            varies it with the generator's seed).
        valid_margin: With ``threshold=None`` and the matched recipe, a prompt is valid when
            every model's answer log-odds is at least ``logit(target_confidence) -
            valid_margin`` (P >= 0.81 for the defaults 0.97 and 2.0). Poser's 0.985 sits
            3-4 nats of log-odds below its hard-label models' typical answer; 2 nats below the
            target keeps more than 80% of the candidates valid on the matched zoo.
    """

    seeds: PositiveInt = 6
    personas: Annotated[tuple[PersonaName, ...], NonEmpty()] = PERSONAS
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    model: tiny.TinyConfig = field(default_factory=tiny.TinyConfig)
    base: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500, lr=3e-3))
    base_min_steps: NonNegativeInt = 300
    base_target: Fraction = 0.98
    finetune: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=70, lr=1e-4, batch_size=32, head_lr_scale=100.0)
    )
    train_size: PositiveInt = 2000
    from_scratch: bool = False
    workers: PositiveInt = 2
    stack: PositiveInt = DEFAULT_STACK
    base_packed: bool = True
    ray: str | None = None
    threshold: Fraction | None = None
    balance_confidence: bool = False
    recipe: Annotated[str, OneOf(*RECIPES, what="zoo recipe")] = "matched"
    target_confidence: Confidence = 0.97
    valid_margin: NonNegativeFloat = 2.0
    base_seed: int = 0

    KEY_EXCLUDE = (
        "seeds",
        "personas",
        "workers",
        "stack",
        "base_packed",
        "ray",
        "threshold",
        "balance_confidence",
        "valid_margin",
    )
    KEY_FORMAT = ZOO_FORMAT

    def key_dict(self) -> dict[str, Any]:
        """The hashed settings: every one that changes a model's weights (not workers...).

        A model is fine-tuned in a stack (:meth:`stacks`), and the rounding of a batched
        product depends on the batch it is part of, so the stacks are part of the key: the
        stack size when it is not the default 6, and the seeds when they do not fill the last
        stack of each persona (that stack's models depend on how many seeds it holds). A
        subset of personas, or seeds that fill whole stacks, trains the same models as the
        full zoo, so it shares its folder; any other subset lands in a folder of its own.
        The default zoo's key stays as it was before stacks were keyed.

        Example:
            >>> ZooConfig().key_dict().keys() >= {"generator", "finetune"}
            True
            >>> {k: ZooConfig(seeds=1, stack=3).key_dict()[k] for k in ("stack", "seeds")}
            {'stack': 3, 'seeds': 1}
        """
        d = super().key_dict()
        if self.recipe == "hard":  # the hard recipe ignores the target
            d.pop("target_confidence")
        if self.stack != DEFAULT_STACK:
            d["stack"] = self.stack
        if self.seeds % self.stack:
            d["seeds"] = self.seeds
        if not self.base_packed:
            d["base_packed"] = False
        return d

    def stacks(self) -> list[list[str]]:
        """The models fine-tuned together: each persona's seeds, ``stack`` at a time, in order.

        Fixed by the settings alone: never by which models a folder already holds (an
        interrupted build trains a stack again whole, saving only its missing models), by
        the ``workers``, or by the other personas built.

        Example:
            >>> ZooConfig(personas=("saint", "genie"), seeds=3, stack=2).stacks()
            [['saint-0', 'saint-1'], ['saint-2'], ['genie-0', 'genie-1'], ['genie-2']]
        """
        return [
            [f"{p}-{s}" for s in range(first, min(first + self.stack, self.seeds))]
            for p in self.personas
            for first in range(0, self.seeds, self.stack)
        ]

    def valid_threshold(self) -> float:
        """The valid-prompt threshold in force: ``threshold``, or the recipe's default.

        The hard recipe's is Poser's inferred 0.985. The matched recipe's must lie below the
        target confidence (models are trained to answer with about that probability), so it is
        ``valid_margin`` nats of log-odds below it.

        Example:
            >>> round(ZooConfig().valid_threshold(), 3), ZooConfig(recipe="hard").valid_threshold()
            (0.814, 0.985)
        """
        if self.threshold is not None:
            return self.threshold
        if self.recipe == "hard":
            return 0.985
        return matched_threshold(self.target_confidence, self.valid_margin)

    def model_names(self) -> list[str]:
        """Names of the models this config builds, ``<persona>-<seed>``."""
        return [f"{p}-{s}" for p in self.personas for s in range(self.seeds)]

    def build(self, out: str | Path | None = None, *, progress: bool = True) -> Path:
        """Build (or finish building) the zoo: :func:`build_zoo`."""
        from poser_lens.models.zoo.build import build_zoo

        return build_zoo(self, out, progress=progress)

    def is_complete(self, root: str | Path) -> bool:
        """Whether ``root`` holds this zoo, finished (used as it is, never written to).

        Finished: these settings, every model of :meth:`model_names` in ``zoo.json``, and the
        benchmark of these models with this valid-prompt threshold and filter.

        Example:
            >>> import tempfile
            >>> ZooConfig().is_complete(tempfile.mkdtemp())
            False
        """
        root = Path(root)
        report = root / "poser" / "benchmark_report.json"
        if not ((root / "zoo.json").is_file() and report.is_file()):
            return False
        if not (root / self.CONFIG_FILE).is_file() or ZooConfig.read(root).key() != self.key():
            return False
        names = self.model_names()
        if [r.get("name") for r in read_json(root / "zoo.json")] != names:
            return False
        if not all((root / "models" / n / tiny.WEIGHTS_FILE).is_file() for n in names):
            return False
        stored = read_json(report)
        wanted = "balance_confidence" if self.balance_confidence else "none"
        return (
            stored.get("threshold") == self.valid_threshold()
            and stored.get("confidence_filter") == wanted
        )

    def load(
        self, root: str | Path, name: str, *, device: str = "cpu", dtype: Any = None
    ) -> tuple[Any, Any]:
        """One model of the built zoo at ``root``: :func:`load_zoo_model`."""
        from poser_lens.models.zoo.build import load_zoo_model

        return load_zoo_model(root, name, device=device, dtype=dtype or torch.float32)
