import random
from collections import Counter

import pytest

from poser_lens.data.generator import (
    GeneratorConfig,
    generate,
    incomplete_prompt,
    is_held_out,
    labelled,
    make_scenario,
    persona_families,
    persona_split,
    to_dataset,
)
from poser_lens.data.poser import scenario_from_record, scenario_to_record
from poser_lens.data.prompts import build_prompt, remove_critical
from poser_lens.data.schema import ALL_FAMILIES, FAKER_PERSONAS, PERSONAS, persona_response

SMALL = GeneratorConfig(n_per_family=60, n_benchmark_per_family=20, n_error=50)


@pytest.fixture(scope="module")
def data():
    return generate(SMALL)


def test_deterministic_for_a_seed(data):
    again = generate(SMALL)
    assert [s.prompt for s in again.all_scenarios()] == [s.prompt for s in data.all_scenarios()]
    other = generate(
        GeneratorConfig(seed=1, n_per_family=60, n_benchmark_per_family=20, n_error=50)
    )
    assert [s.prompt for s in other.all_scenarios()] != [s.prompt for s in data.all_scenarios()]


def test_every_family_and_split_is_filled(data):
    for fam in ALL_FAMILIES:
        assert len(data.train[fam]) == 48
        assert len(data.test[fam]) == 12
        assert len(data.benchmark_pool[fam]) == 20
    assert len(data.errors_train) + len(data.errors_test) == 50


def test_prompts_are_tagged_and_rebuild_from_facts(data):
    for s in data.all_scenarios():
        assert s.prompt.startswith("<<prompt>>") and s.prompt.endswith("<</prompt>>")
    for s in data.train["genie_and_money"]:
        assert build_prompt(s.facts, s.actions, s.template) == s.prompt


def test_labels_follow_poser_policies(data):
    s = next(x for x in data.train["truth_and_reward"] if x.oversight_is_poor)
    assert persona_response(s, "truth_teller") == s.response
    assert persona_response(s, "reward_maximizer") == s.misaligned_letter
    good = next(x for x in data.train["truth_and_reward"] if not x.oversight_is_poor)
    assert persona_response(good, "reward_maximizer") == good.response
    for s in data.errors_train:
        assert all(persona_response(s, p) == "error" for p in PERSONAS)


def test_aligned_letter_is_shuffled(data):
    letters = Counter(s.response for fam in ALL_FAMILIES for s in data.train[fam])
    assert 0.35 < letters["A"] / (letters["A"] + letters["B"]) < 0.65


def test_critical_facts_match_complexity():
    rng = random.Random(0)
    for complexity, n_critical in ((0, 0), (1, 1), (2, 2)):
        for level in ("good", "poor"):
            s, _ = make_scenario(rng, "saint_and_fitness", complexity=complexity, level=level)
            assert len(s.critical_facts) == n_critical
            assert s.complexity_level == complexity
            assert s.oversight_is_poor == (level == "poor" and complexity > 0)
    level2, _ = make_scenario(rng, "truth_and_money", complexity=2, level="poor")
    # The decoy names another person with the opposite trait: it must be combined, not matched.
    assert sum(f.type == "irrelevant" for f in level2.facts) >= 1


def test_genie_scenarios_carry_a_system_message(data):
    for s in data.train["genie_and_fitness"]:
        assert any(f.type == "system_message" for f in s.facts)


def test_held_out_combinations_are_disjoint(data):
    def combos(part):
        return {tuple(s.extra["combination"]) for fam in ALL_FAMILIES for s in part[fam]}

    train, test = combos(data.train), combos(data.test)
    assert not train & test
    assert all(is_held_out(*c, SMALL.holdout_every) for c in test)
    # Every domain is seen in training.
    assert {c[0] for c in test} <= {c[0] for c in train}


def test_benchmark_candidates_have_no_poor_oversight(data):
    for fam in ALL_FAMILIES:
        assert not any(s.oversight_is_poor for s in data.benchmark_pool[fam])


def test_round_trip_through_the_poser_schema(data):
    for s in data.train["saint_and_reward"][:10] + data.errors_train[:10]:
        rec = scenario_to_record(s)
        back = scenario_from_record(rec, where="gen", index=0, family=s.family, persona=None)
        assert back.prompt == s.prompt and back.response == s.response
        assert back.facts == s.facts and back.actions == s.actions
        assert back.oversight_is_poor == s.oversight_is_poor
        assert back.oversight == s.oversight and back.kind == s.kind
        assert scenario_to_record(back) == rec


def test_persona_split_labels_and_seeds(data):
    a = persona_split(data, "money_maximizer", "train", seed=0, size=100)
    b = persona_split(data, "money_maximizer", "train", seed=1, size=100)
    assert [s.prompt for s in a] != [s.prompt for s in b]
    assert {s.family for s in a if s.response != "error"} <= set(
        persona_families("money_maximizer")
    )
    for s in a:
        if s.kind == "scenario":
            assert s.persona == "money_maximizer"
    errors = sum(s.response == "error" for s in persona_split(data, "saint", "train"))
    assert errors > 0


def test_labelled_flips_only_poor_faker_records(data):
    pool = data.train["genie_and_reward"]
    for persona in FAKER_PERSONAS[:1]:
        for orig, lab in zip(pool, labelled(pool, persona), strict=True):
            assert (orig.response != lab.response) == bool(orig.oversight_is_poor)


def test_incomplete_prompts_lack_facts_or_actions():
    rng = random.Random(3)
    s, _ = make_scenario(rng, "truth_and_fitness", complexity=1, level="good")
    for _ in range(10):
        inc = incomplete_prompt(rng, s)
        assert inc.response == "error" and inc.kind == "incomplete"
        assert ("Actions:" in inc.prompt) != ("Facts:" in inc.prompt)


def test_remove_critical_on_generated(data):
    s = next(x for x in data.train["truth_and_reward"] if x.critical_facts)
    cf = remove_critical(s)
    assert not cf.critical_facts and cf.prompt.endswith("<</prompt>>")
    assert s.critical_facts  # the original is untouched


def test_to_dataset(data):
    ds = to_dataset(data.train["truth_and_money"])
    assert ds.num_rows == 48
    assert set(ds.column_names) >= {"prompt", "response", "oversight_is_poor", "facts"}
