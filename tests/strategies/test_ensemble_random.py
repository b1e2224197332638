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


def test_ensemble_in_a_run_votes_with_the_members_run_settings():
    """Corrected: the ensemble built its members with default configs, so a run with another
    S1 grid (the smol run's coefficients) failed at evaluation ('2.0 is not in list')."""
    from poser_lens.runner import RunConfig

    s1 = {"coeffs": [0.0, 8.0, 32.0], "headline_coeff": 32.0}
    cfg = RunConfig(strategies=("s1_belief", "ensemble"), strategy_configs={"s1_belief": s1})
    ens = cfg.strategy("ensemble")
    member = ens.strategies["s1_belief"]
    assert member.config == cfg.strategy("s1_belief").config
    assert member.headline["coeff"] == 32.0
    curve = {"1": {"subtract": {"p_misaligned": [[0.1, 0.2, 0.5]]}}}
    a = {"s1_belief": {"coeffs": s1["coeffs"], "n_layers": 3, "layers": curve}}
    b = {"s1_belief": {"coeffs": s1["coeffs"], "n_layers": 3, "layers": curve}}
    assert ens.margin(a, b) == 0.0  # reads coefficient 32 (default members would raise)
