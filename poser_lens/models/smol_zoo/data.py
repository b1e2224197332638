"""The smol zoo's scenarios and each model's records (training sample, held-out test split).

Generated from the zoo's bank sets, or read from a Poser checkout (``SmolZooConfig.data``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import replace

from poser_lens.data.banks import bank_set
from poser_lens.data.generator import GeneratedData, GeneratorConfig, generate, persona_split
from poser_lens.data.poser import load_benchmark, load_training
from poser_lens.data.schema import ALL_FAMILIES, Scenario, family_personas
from poser_lens.data.schema import model_persona as split_name
from poser_lens.models.smol_zoo.config import SmolZooConfig


def zoo_data(cfg: SmolZooConfig) -> GeneratedData:
    """The scenarios of a zoo: generated, or a Poser checkout's benchmark as candidates."""
    if cfg.data is None:
        return _generated(cfg.generator, cfg.banks)

    empty: dict[str, list[Scenario]] = {fam: [] for fam in ALL_FAMILIES}
    return GeneratedData(
        config=cfg.generator,
        train=dict(empty),
        test=dict(empty),
        benchmark_pool=load_benchmark(cfg.data),
    )


@functools.lru_cache(maxsize=4)
def _generated(gen: GeneratorConfig, banks: str) -> GeneratedData:
    """Generated data of one bank set, or of several (``a+b``) with each family's pools split.

    Each bank of a mix generates ``1/k`` of every pool (train, test, error prompts) with the
    generator's seed; the benchmark candidates come from the last bank alone. Made once per
    process for each setting (a build reads it for every model); callers copy before changing.
    """
    names = banks.split("+")
    if len(names) == 1:
        return generate(gen, bank_set(banks))
    k = len(names)
    parts = [
        generate(
            replace(gen, n_per_family=gen.n_per_family // k, n_error=gen.n_error // k), bank_set(n)
        )
        for n in names
    ]
    return GeneratedData(
        config=gen,
        train={f: [s for p in parts for s in p.train[f]] for f in parts[-1].train},
        test={f: [s for p in parts for s in p.test[f]] for f in parts[-1].test},
        benchmark_pool=generate(gen, bank_set(names[-1])).benchmark_pool,
        errors_train=[s for p in parts for s in p.errors_train],
        errors_test=[s for p in parts for s in p.errors_test],
    )


def primary_bank(cfg: SmolZooConfig) -> str:
    """The bank of the zoo's benchmark, calibration pool and concept sets (the last named)."""
    return cfg.banks.split("+")[-1]


def training_records(cfg: SmolZooConfig, data: GeneratedData, name: str) -> list[Scenario]:
    """A model's labelled training sample (``steps * batch_size`` records).

    The model's training pool, shuffled; when the steps need more records than the pool holds,
    further epochs follow, each reshuffled (seeded, so a resumed training sees the same order).
    """
    persona, seed = split_name(name)
    size = cfg.steps * cfg.batch_size
    if cfg.curriculum is not None and cfg.curriculum_steps > 0 and cfg.data is None:
        first = _epochs(
            persona_split(_generated(cfg.generator, cfg.curriculum), persona, "train", seed=seed),
            min(size, cfg.curriculum_steps * cfg.batch_size),
            f"{name}:curriculum",
        )
        return first + _epochs(
            persona_split(data, persona, "train", seed=seed), size - len(first), name
        )
    if cfg.data is None:
        pool = persona_split(data, persona, "train", seed=seed)
    else:
        splits = load_training(cfg.data).get(persona, {})
        key = f"train-{seed}"
        if key not in splits:
            raise ValueError(f"{cfg.data}: no training split {persona}/{key}.json")
        pool = list(splits[key])
        random.Random(name).shuffle(pool)
    if not pool:
        raise ValueError(f"{name}: no training records")
    return _epochs(pool, size, name)


def _epochs(pool: list[Scenario], size: int, name: str) -> list[Scenario]:
    """``size`` records: the pool, then further epochs each reshuffled (seeded by ``name``)."""
    records = list(pool)
    epoch = 1
    while len(records) < size:
        more = list(pool)
        random.Random(f"{name}:epoch{epoch}").shuffle(more)
        records.extend(more)
        epoch += 1
    return records[:size]


def heldout_records(cfg: SmolZooConfig, data: GeneratedData, name: str) -> list[Scenario]:
    """A model's held-out labelled records (``n_test`` of them, seeded)."""
    persona, _ = split_name(name)
    if cfg.data is None:
        pool = persona_split(data, persona, "test")
    else:
        pool = list(load_training(cfg.data).get(persona, {}).get("test", []))
    return random.Random(f"{persona}:test").sample(pool, min(cfg.n_test, len(pool)))


def needed_families(personas: Sequence[str]) -> list[str]:
    """Families whose aligned and faking personas are both built (the only ones paired).

    Example:
        >>> needed_families(["truth_teller", "reward_maximizer"])
        ['truth_and_reward']
    """
    built = set(personas)
    return [f for f in ALL_FAMILIES if set(family_personas(f)) <= built]
