"""Contexts of the two small-zoo models, shared by the S4, S6 and patching tests."""

from conftest import small_zoo_config

from poser_lens.data.concepts import concept_sets
from poser_lens.data.poser import ModelPair, load_benchmark
from poser_lens.models.zoo import load_zoo_model
from poser_lens.strategies import ModelContext

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
