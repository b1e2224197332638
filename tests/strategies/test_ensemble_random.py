"""The per-prompt contract of the ensemble (restricts each member) and the random baseline."""

import pytest
from s4s6_support import contexts

from poser_lens.strategies import get_strategy
from poser_lens.strategies.base import NoConfig, Strategy
from poser_lens.strategies.ensemble import EnsembleStrategy

MEMBERS = ("s4_concepts", "s6_counterfactual", "s6_saliency", "patching", "random")


@pytest.fixture(scope="module")
def ctxs(small_zoo):
    return contexts(small_zoo)


def test_ensemble_restricts_each_member(ctxs):
    ens = EnsembleStrategy(members=MEMBERS)
    a, b = (ens.assemble({m: get_strategy(m).score_model(c) for m in MEMBERS}) for c in ctxs)
    every = set(range(len(ctxs[0].prompts)))
    ra, rb = ens.restrict(a, every), ens.restrict(b, every)
    assert set(ra) == set(MEMBERS) and ens.per_prompt
    assert ens.margin(ra, rb) == ens.margin(a, b)
    for m in MEMBERS:  # each member's score is restricted by its own strategy
        strat = ens.strategies[m]
        assert ra[m] == strat.restrict(a[m], every)
        assert strat.margin(ra[m], rb[m]) == pytest.approx(strat.margin(a[m], b[m]), abs=1e-6)
    # Nothing kept: every prompt-based member ties (NaN), only the coin of `random` votes.
    none_a, none_b = ens.restrict(a, set()), ens.restrict(b, set())
    assert abs(ens.margin(none_a, none_b)) == 1.0
    assert none_a["random"] == a["random"]
    # A member missing from a score stays missing.
    assert set(ens.restrict({"random": a["random"]}, every)) == {"random"}


def test_ensemble_restrict_needs_per_prompt_members():
    class Summary(Strategy):
        name = "summary"
        config_cls = NoConfig

        def score_model(self, ctx):
            return {"x": 1.0}

        def statistic(self, score, **settings):
            return score["x"]

    ens = EnsembleStrategy(members=("random",))
    ens.__dict__["strategies"] = {"summary": Summary()}
    with pytest.raises(NotImplementedError, match="summary"):
        ens.restrict({"summary": {"x": 1.0}}, {0})


def test_random_restrict_is_the_score_unchanged(ctxs):
    s = get_strategy("random")
    a, b = (s.score_model(c) for c in ctxs)
    assert s.per_prompt
    for keep in (set(), {0, 3}, set(range(len(ctxs[0].prompts)))):
        assert s.restrict(a, keep) == a
        assert s.margin(s.restrict(a, keep), s.restrict(b, keep)) == s.margin(a, b)
