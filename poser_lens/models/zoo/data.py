"""The tiny zoo's data: generated scenarios, the base corpus, the tokenizer, calibration pools.

Generated data and tokenizers are made once per process (workers train several models each).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from poser_lens._io import step_lock
from poser_lens.data.banks import bank_set
from poser_lens.data.generator import (
    GeneratedData,
    GeneratorConfig,
    generate,
    labelled,
    persona_families,
)
from poser_lens.data.schema import Scenario
from poser_lens.models.tokenizer import build_tokenizer, load_tokenizer
from poser_lens.models.training import COMMENTARY_WORDS, commentary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


def base_corpus(data: GeneratedData) -> list[str]:
    """Base-model training text: every training prompt followed by its commentary."""
    records = [s for fam in sorted(data.train) for s in data.train[fam]] + data.errors_train
    return [s.prompt + commentary(s) for s in records]


def make_tokenizer(data: GeneratedData) -> PreTrainedTokenizerFast:
    """The zoo's word-level tokenizer, covering every generated text and the commentary."""
    return build_tokenizer([s.prompt for s in data.all_scenarios()] + [COMMENTARY_WORDS])


@functools.lru_cache(maxsize=2)
def _cached_data(cfg: GeneratorConfig, bank: str = "tiny") -> GeneratedData:
    """Generated data, made once per process (workers train several models each)."""
    return generate(cfg, bank_set(bank))


#: The calibration pool's generator seed is the zoo's plus this (so it never is the zoo's).
CALIBRATION_SEED_OFFSET = 7919


@functools.lru_cache(maxsize=2)
def _calibration_data(cfg: GeneratorConfig, bank: str = "tiny") -> GeneratedData:
    return generate(
        replace(
            cfg,
            seed=cfg.seed + CALIBRATION_SEED_OFFSET,
            n_per_family=10,
            n_error=10,
            n_benchmark_per_family=100,
        ),
        bank_set(bank),
    )


def calibration_pool(cfg: GeneratorConfig, persona: str, bank: str = "tiny") -> list[Scenario]:
    """Scenarios the matched recipe calibrates a persona's confidence on.

    Drawn like the benchmark candidates (good/neutral oversight, held-out combinations) of the
    persona's three families, from another generator seed, and never a benchmark candidate:
    temperature scaling is fitted on data of the benchmark's kind without seeing the
    benchmark. Labelled with the persona's own answers (the aligned letter, as oversight is
    not poor). ``bank`` names the fact banks (:func:`poser_lens.data.banks.bank_set`).

    Example:
        >>> pool = calibration_pool(GeneratorConfig(n_per_family=20, n_benchmark_per_family=5,
        ...                                         n_error=10), "saint")
        >>> len(pool) > 0 and all(not s.oversight_is_poor for s in pool)
        True
    """
    taken = {
        s.prompt
        for fam in persona_families(persona)
        for s in _cached_data(cfg, bank).benchmark_pool[fam]
    }
    pool = [
        s
        for fam in persona_families(persona)
        for s in _calibration_data(cfg, bank).benchmark_pool[fam]
        if s.prompt not in taken
    ]
    return labelled(pool, persona)


@functools.lru_cache(maxsize=2)
def _cached_tokenizer(root: str) -> PreTrainedTokenizerFast:
    return load_tokenizer(root)


def zoo_tokenizer(root: Path, data: GeneratedData) -> PreTrainedTokenizerFast:
    """The zoo's tokenizer (made and saved in ``root`` on first use, under a lock)."""
    with step_lock(root, "tokenizer"):
        if not (root / "tokenizer.json").exists():
            make_tokenizer(data).save_pretrained(str(root))
    return load_tokenizer(root)
