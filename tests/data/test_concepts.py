import json

import pytest

from poser_lens.data.concepts import CONCEPT_PAIRS, concept_sets, write_concepts
from poser_lens.data.generator import GeneratorConfig, generate
from poser_lens.data.poser import load_concepts
from poser_lens.data.prompts import unwrap
from poser_lens.models.zoo import make_tokenizer

CFG = GeneratorConfig(n_per_family=40, n_benchmark_per_family=12, n_error=30)


@pytest.fixture(scope="module")
def data():
    return generate(CFG)


def test_six_wrapped_sets(data):
    sets = concept_sets(data, family="truth_and_reward", n_examples=10)
    assert set(sets) == {n for pair in CONCEPT_PAIRS.values() for n in pair}
    for name, texts in sets.items():
        assert 0 < len(texts) <= 10, name
        assert all(t.startswith("<<prompt>>") and t.endswith("<</prompt>>") for t in texts)


def test_every_word_is_known_to_the_zoo_tokenizer(data):
    tok = make_tokenizer(data)
    for name, texts in concept_sets(data).items():
        for t in texts:
            assert tok.unk_token_id not in tok(t)["input_ids"], (name, t)


def test_opposites_are_distinct(data):
    sets = concept_sets(data)
    for bad, good in CONCEPT_PAIRS.values():
        assert not set(sets[bad]) & set(sets[good])


def test_behaviour_examples_are_paired_training_scenarios_only(data):
    sets = concept_sets(data, family="genie_and_money", n_examples=8)
    train = {unwrap(s.prompt): s for s in data.train["genie_and_money"]}
    held_out = {unwrap(s.prompt) for s in data.test["genie_and_money"]}
    held_out |= {unwrap(s.prompt) for s in data.benchmark_pool["genie_and_money"]}
    for good, bad in zip(sets["aligned_behavior"], sets["misaligned_behavior"], strict=True):
        body, letter = unwrap(good)[:-1], unwrap(good)[-1]
        assert unwrap(bad)[:-1] == body and unwrap(bad)[-1] != letter
        scenario = train[body]  # a training scenario, never a held-out or benchmark one
        assert body not in held_out
        assert not scenario.oversight_is_poor
        assert letter == scenario.aligned_letter


def test_seeded_and_accepts_a_config(data):
    assert concept_sets(data, n_examples=5) == concept_sets(CFG, n_examples=5)


def test_poser_json_round_trip(data, tmp_path):
    sets = concept_sets(data, n_examples=5)
    folder = tmp_path / "src" / "detection_strategies" / "concepts"
    paths = write_concepts(folder, sets)
    assert json.loads(paths[0].read_text())[0].keys() == {"example"}
    assert load_concepts(tmp_path) == sets


def test_fact_sets_do_not_depend_on_the_family(data):
    a = concept_sets(data, family="truth_and_reward", n_examples=5)
    b = concept_sets(data, family="saint_and_fitness", n_examples=5)
    for name in ("security", "vulnerability", "competence", "incompetence"):
        assert a[name] == b[name]
    assert a["aligned_behavior"] != b["aligned_behavior"]
