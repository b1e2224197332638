"""What every testbed gives a job, the settings that choose one, and the pairs a job takes.

Example:
    >>> from poser_lens.data.poser import ModelPair
    >>> ps = [ModelPair("saint-0", f"money_maximizer-{i}", "b/saint_and_money.json")
    ...       for i in range(5)]
    >>> len(select_pairs(ps, TestbedConfig(pairs=2)))
    2
    >>> model_families(ps[:1])
    {'money_maximizer-0': ['saint_and_money'], 'saint-0': ['saint_and_money']}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from poser_lens.config import Config, ConfigError, Device, DType, NonEmpty, OneOf, PositiveInt
from poser_lens.data.poser import ModelPair
from poser_lens.data.schema import Scenario, model_name, model_persona

#: The testbeds, in the order the docs give them.
TESTBED_NAMES = ("tiny", "smol", "poser")
#: A testbed setting: one of :data:`TESTBED_NAMES`.
TestbedName = Annotated[str, OneOf(*TESTBED_NAMES, what="testbed")]
#: A ``models`` setting: model names, ``<persona>-<seed>`` (or any spelling
#: :func:`~poser_lens.data.schema.model_name` reads; None = all models).
ModelNames = Annotated[tuple[str, ...], NonEmpty()]


@dataclass(frozen=True)
class TestbedConfig(Config):
    """The settings that choose a testbed and the models and pairs a job takes from it.

    A job's own config (e.g. :class:`poser_lens.runner.RunConfig`) holds these settings and
    hands them over with ``testbed_config()``.

    Attributes:
        testbed: ``tiny`` (the embedded zoo), ``smol`` (SmolLM2 LoRA personas) or ``poser``.
        seeds: Tiny zoo: models per persona (6 gives Poser's 36 models and 324 pairs).
        zoo_config: Tiny zoo: a YAML/JSON file of zoo settings (see ``poser-lens zoo build``).
        zoo_dir: Tiny or smol zoo: use this built zoo folder instead of the cached default.
        device: Where models run (``cuda`` for real models).
        dtype: Model dtype name (``float32``; ``bfloat16`` for 13B models).
        models_dir: Poser testbed: folder of HF checkpoint folders, one per model name.
        data: Poser testbed: the Poser checkout (or its ``data/`` folder).
        models: Only pairs whose two models are both in this list; None = all.
        pairs: Only this many pairs (a seeded random subset); None = all.
        seed: Seeds the pair subset (and the poser testbed's concept sets).
        concepts: Poser testbed: also make strategy 4's concept sets (the tiny and smol
            testbeds always do: they come with the zoo's generator).
    """

    __test__ = False  # not a pytest test class

    testbed: TestbedName = "tiny"
    seeds: PositiveInt = 6
    zoo_config: str | None = None
    zoo_dir: str | None = None
    device: Device = "cpu"
    dtype: DType = "float32"
    models_dir: str | None = None
    data: str | None = None
    models: ModelNames | None = None
    pairs: PositiveInt | None = None
    seed: int = 0
    concepts: bool = True

    def check(self) -> None:
        """``models`` names models ``<persona>-<seed>`` (:func:`check_model_names`)."""
        check_model_names(self)


def check_model_names(cfg: TestbedConfig) -> None:
    """Every name in ``cfg.models`` names a model, and one the tiny zoo will have.

    A name may be spelled as :func:`~poser_lens.data.schema.model_name` reads it
    (``saint_0``, ``models/together/saint-0``).

    Raises:
        ConfigError: Naming the first bad name (``models[i]``).

    Example:
        >>> TestbedConfig(models=("saint-0", "saint-9"), seeds=2)
        Traceback (most recent call last):
        ...
        poser_lens.config.ConfigError: models[1]: 'saint-9' is not in a zoo of 2 seeds per persona (seeds 0 to 1)
    """  # noqa: E501
    for i, name in enumerate(cfg.models or ()):
        try:
            _, seed = model_persona(model_name(name))
        except ValueError as err:
            raise ConfigError(f"models[{i}]", str(err)) from None
        if cfg.testbed == "tiny" and cfg.zoo_dir is None and seed >= cfg.seeds:
            raise ConfigError(
                f"models[{i}]",
                f"{name!r} is not in a zoo of {cfg.seeds} seeds per persona "
                f"(seeds 0 to {cfg.seeds - 1})",
            )


def check_device(device: str) -> None:
    """Fail now, in one line, if this machine has no ``device`` (before any work is done).

    Raises:
        ValueError: Naming the device and what the machine has.

    Example:
        >>> check_device("cpu")
    """
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: no CUDA GPU on this machine (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: no Apple GPU (MPS) on this machine")


class HasTestbedConfig(Protocol):
    """A job config that holds testbed settings (e.g. :class:`poser_lens.runner.RunConfig`)."""

    def testbed_config(self) -> TestbedConfig:
        """Its testbed settings."""
        ...


def as_testbed_config(cfg: TestbedConfig | HasTestbedConfig) -> TestbedConfig:
    """``cfg`` itself, or the testbed settings of a job config that holds them."""
    return cfg if isinstance(cfg, TestbedConfig) else cfg.testbed_config()


@dataclass
class Testbed:
    """What a job needs from a testbed: prompts, pairs, concepts and a model loader.

    Attributes:
        valid: Family -> its valid prompts.
        pairs: The (aligned, faker) pairs.
        concepts: Concept name -> example texts (strategy 4).
        load: Model name -> ``(hooked model, tokenizer)``, in the testbed's dtype or the one
            named by the keyword ``dtype`` (a dtype name: ``load(name, dtype="float32")``).
        info: What to record about the testbed (zoo folder, key, benchmark report).
        release: Called after a model is scored and dropped (frees memory before the next).
        max_workers: At most this many scoring processes (1 for models that fill a GPU).
        build_seconds: How long making the testbed took (building a zoo included).
    """

    __test__ = False  # not a pytest test class

    valid: dict[str, list[Scenario]]
    pairs: list[ModelPair]
    concepts: dict[str, list[str]]
    load: Callable[..., tuple[Any, Any]]
    info: dict[str, Any]
    release: Callable[[], None] | None = None
    max_workers: int | None = None
    build_seconds: float = 0.0

    def tag(self, cfg: TestbedConfig) -> str:
        """What stored scores record as their testbed (the zoo's key, else its name)."""
        import json

        return json.dumps(self.info.get("zoo_key", cfg.testbed))


def select_pairs(
    pairs: Sequence[ModelPair], cfg: TestbedConfig | HasTestbedConfig
) -> list[ModelPair]:
    """The pairs a job takes: restricted to ``cfg.models``, then ``cfg.pairs`` of them.

    The subset is a seeded random sample (``cfg.seed``), kept in stored order. ``cfg`` may be
    a job config holding testbed settings (a ``RunConfig``).

    Raises:
        ValueError: If no pair is left.
    """
    cfg = as_testbed_config(cfg)
    chosen = list(pairs)
    if cfg.models is not None:
        allowed = {model_name(m) for m in cfg.models}
        chosen = [p for p in chosen if p.aligned in allowed and p.misaligned in allowed]
    if cfg.pairs is not None and cfg.pairs < len(chosen):
        keep = set(random.Random(cfg.seed).sample(range(len(chosen)), cfg.pairs))
        chosen = [p for i, p in enumerate(chosen) if i in keep]
    if not chosen:
        raise ValueError("no pair to evaluate (check --models / --pairs against the benchmark)")
    return chosen


def model_families(pairs: Sequence[ModelPair]) -> dict[str, list[str]]:
    """Model -> the families it is scored on (those of its pairs), sorted."""
    out: dict[str, set[str]] = {}
    for p in pairs:
        for m in (p.aligned, p.misaligned):
            out.setdefault(m, set()).add(p.family)
    return {m: sorted(f) for m, f in sorted(out.items())}
