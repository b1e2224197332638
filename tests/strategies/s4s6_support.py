"""Contexts of the two small-zoo models, shared by the S3-S6 and patching tests, and the check
of the per-prompt contract (``restrict``) every strategy's tests run."""

import json
import math

import pytest
from conftest import small_zoo_config

from poser_lens.data.concepts import concept_sets
from poser_lens.data.poser import ModelPair, load_benchmark
from poser_lens.models.zoo import load_zoo_model
from poser_lens.strategies import ModelContext
from poser_lens.strategies.base import PROMPT_INDEX

FAMILY = "truth_and_reward"
MODELS = ("truth_teller-0", "reward_maximizer-0")
PAIRS = [ModelPair(MODELS[0], MODELS[1], f"data/benchmark/{FAMILY}.json")]


def contexts(zoo, **changes) -> list[ModelContext]:
    """One context per small-zoo model on the family, with our concept sets."""
    prompts = [s for s in load_benchmark(zoo / "poser")[FAMILY] if not s.oversight_is_poor]
    concepts = concept_sets(small_zoo_config().generator, family=FAMILY, n_examples=6)
    out = []
    for name in MODELS:
        model, tok = load_zoo_model(zoo, name)
        out.append(ModelContext(name, model, tok, FAMILY, prompts, concepts=concepts, **changes))
    return out


def scores_of(strategy, ctxs) -> dict:
    """Model -> family -> score."""
    return {c.name: {c.family: strategy.score_model(c)} for c in ctxs}


def check_restrict(strategy, a, b, n_valid, points=({},), rel=1e-6, abs_tol=1e-9):
    """The per-prompt contract on two real scores of one family (``n_valid`` valid prompts).

    ``prompt_index`` holds distinct valid indices; restricting both scores to every valid
    prompt keeps the margin at the headline (and at each of ``points``); restricting to no
    prompt gives a NaN margin (a tie); restricted scores are JSON and restrict again.
    """
    assert strategy.per_prompt
    for score in (a, b):
        idx = score[PROMPT_INDEX]
        assert idx and all(isinstance(i, int) and 0 <= i < n_valid for i in idx)
        assert len(set(idx)) == len(idx)
    every = set(range(n_valid))
    ra, rb = strategy.restrict(a, every), strategy.restrict(b, every)
    json.dumps(ra)
    assert ra[PROMPT_INDEX] == a[PROMPT_INDEX]
    for point in points:
        want = strategy.margin(a, b, **point)
        got = strategy.margin(ra, rb, **point)
        assert got == pytest.approx(want, rel=rel, abs=abs_tol), point
    assert strategy.restrict(ra, every) == ra
    assert math.isnan(strategy.margin(strategy.restrict(a, set()), strategy.restrict(b, set())))
    return ra, rb
