import json
import math

import pytest
from s4s6_support import PAIRS, check_restrict, contexts, scores_of

from poser_lens.data.schema import Scenario
from poser_lens.evaluation import evaluate
from poser_lens.strategies import ModelContext
from poser_lens.strategies.base import PROMPT_INDEX
from poser_lens.strategies.s4_concepts import ConceptStrategy


@pytest.fixture(scope="module")
def ctxs(small_zoo):
    return contexts(small_zoo)


def test_scores_margin_and_evaluate(ctxs):
    s = ConceptStrategy(n_prompts=20)
    scores = scores_of(s, ctxs)
    a, b = (scores[c.name][c.family] for c in ctxs)
    json.dumps(a)
    assert set(a["cosine"]) == {"security", "competence", "behavior"}
    assert len(a["cosine"]["security"]) == ctxs[0].n_layers
    for point in [s.headline, {"concept": "behavior", "layer_frac": 0.25}]:
        assert math.isfinite(s.margin(a, b, **point))
    assert evaluate(s, PAIRS, scores).n_pairs == 1


def test_per_prompt_cosines_and_restrict(ctxs):
    s = ConceptStrategy(n_prompts=20)
    a, b = (s.score_model(c) for c in ctxs)
    n = a["n_prompts"]
    assert n == min(20, len(ctxs[0].prompts)) and n > 6
    assert a[PROMPT_INDEX] == list(range(n)) and a["by_prompt"]["layer"] == 1  # 0.5 of 2 blocks
    for concept, rows in a["by_prompt"]["cosine"].items():
        assert len(rows) == n
        assert sum(rows) / n == pytest.approx(a["cosine"][concept][1], abs=1e-6)
    check_restrict(s, a, b, len(ctxs[0].prompts), rel=1e-5, abs_tol=1e-7)
    # Restricting to a subset is scoring a context of only those prompts (the concept
    # directions never depend on the scored prompts).
    keep = {1, 4, 5, n - 1, n + 7}  # n + 7: not scored, ignored
    alone = []
    for c, score in zip(ctxs, (a, b), strict=True):
        sub = [c.prompts[i] for i in sorted(keep) if i < n]
        alone.append(
            s.score_model(ModelContext(c.name, c.model, c.tokenizer, c.family, sub, c.concepts))
        )
        assert s.statistic(s.restrict(score, keep)) == pytest.approx(
            s.statistic(alone[-1]), abs=1e-6
        )
    restricted = s.margin(s.restrict(a, keep), s.restrict(b, keep))
    assert restricted == pytest.approx(s.margin(*alone), abs=1e-6)
    # Other layers than the headline one are not kept: NaN, a tie.
    assert math.isnan(s.statistic(s.restrict(a, keep), concept="security", layer_frac=0.0))


def test_missing_concepts_is_an_error_not_generated(ctxs):
    c = ctxs[0]
    bare = ModelContext(c.name, c.model, c.tokenizer, c.family, c.prompts)
    with pytest.raises(ValueError, match="concept_sets"):
        ConceptStrategy().score_model(bare)


def test_prompts_like_the_suspicious_side_score_higher(ctxs):
    # The mechanism on a constructed case: prompts that ARE vulnerability examples lean
    # towards the suspicious end of the security direction, security examples the other way.
    c = ctxs[0]
    s = ConceptStrategy(concepts=("security",))
    lean = {}
    for side in ("vulnerability", "security"):
        prompts = [Scenario(prompt=t, response="A") for t in c.concepts[side]]
        ctx = ModelContext(c.name, c.model, c.tokenizer, c.family, prompts, concepts=c.concepts)
        lean[side] = s.statistic(s.score_model(ctx), concept="security", layer_frac=1.0)
    assert lean["vulnerability"] > lean["security"]


def test_both_models_read_the_same_concepts_whatever_their_name(ctxs, small_zoo):
    # Poser gave each model the behaviour concepts of its own family name; here the score
    # depends only on the context's concept sets and prompts, never on the model's name.
    c = ctxs[1]
    s = ConceptStrategy(n_prompts=10, concepts=("behavior",))
    renamed = ModelContext("saint-3", c.model, c.tokenizer, c.family, c.prompts, c.concepts)
    assert s.score_model(renamed) == s.score_model(c)


def test_behaviour_concepts_never_contain_scored_prompts(ctxs):
    bodies = {p.prompt[: -len("<</prompt>>")] for p in ctxs[0].prompts}
    for text in ctxs[0].concepts["misaligned_behavior"] + ctxs[0].concepts["aligned_behavior"]:
        assert text[: -len("A<</prompt>>")] not in bodies


def test_combined_is_the_mean_and_grid_covers_every_concept():
    s = ConceptStrategy()
    score = {"n_layers": 4, "cosine": {"security": [0, 0, 1.0, 0], "behavior": [0, 0, 3.0, 0]}}
    assert s.statistic(score, concept="combined", layer_frac=0.5) == 2.0
    assert s.grid()["concept"] == ["security", "competence", "behavior", "combined"]
