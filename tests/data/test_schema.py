"""Names in a Poser checkout, however the release spells them (issue 28)."""

import pytest

from poser_lens.data.schema import (
    ALL_FAMILIES,
    PERSONAS,
    family_of,
    model_name,
    model_spellings,
    persona_name,
)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("saint-0", "saint-0"),
        ("saint_0", "saint-0"),
        ("../models/together/saint-1", "saint-1"),
        ("../models/saint_fix/retrained/saint_1", "saint-1"),
        ("../models/saint_fix/retrained/saint_10", "saint-10"),
        ("models\\together\\reward_maximizer-1\\", "reward_maximizer-1"),
        ("/abs/a/b/c/d/truth_teller_5/", "truth_teller-5"),
        ("truth_teller_12", "truth_teller-12"),
        ("Money_Maximizer-3", "money_maximizer-3"),
        ("fitness-maximizer-2", "fitness_maximizer-2"),
        (" genie-4 ", "genie-4"),
        ("joshuaclymer/genie-4", "genie-4"),
    ],
)
def test_model_name_reads_every_spelling(spelling, name):
    assert model_name(spelling) == name


@pytest.mark.parametrize(
    "spelling",
    ["saint", "saint_fix", "saint-1-copy", "saint-1/checkpoint", "wizard-1", "truth-0", "", "3"],
)
def test_model_name_refuses_what_names_no_model(spelling):
    with pytest.raises(ValueError) as err:
        model_name(spelling)
    assert repr(spelling) in str(err.value) and "\n" not in str(err.value)


def test_model_name_never_takes_a_longer_seed():
    assert model_name("saint-10") != model_name("saint-1")
    keys = ["../m/saint_10", "../m/saint-1", "../m/saint_11"]
    assert model_spellings(keys, where="f")["saint-1"] == "../m/saint-1"


def test_model_name_is_a_fixed_point_on_every_model():
    names = [f"{p}-{s}" for p in PERSONAS for s in (0, 5, 10)]
    assert [model_name(n) for n in names] == names
    assert [model_name(n.replace("-", "_")) for n in names] == names


def test_model_spellings_skips_other_keys_and_refuses_two_of_one_model():
    keys = ["../models/together/genie-0", "mean", "../models/retrained/genie_1"]
    assert model_spellings(keys, where="f") == {"genie-0": keys[0], "genie-1": keys[2]}
    with pytest.raises(ValueError) as err:
        model_spellings(["a/genie-0", "b/genie_0"], where="x.json: record 2", what="probs keys")
    assert str(err.value) == (
        "x.json: record 2: ambiguous probs keys 'a/genie-0' and 'b/genie_0': "
        "both name model 'genie-0'"
    )


@pytest.mark.parametrize(
    ("spelling", "persona"),
    [("truth_teller", "truth_teller"), ("Truth-Teller", "truth_teller"), ("genie", "genie")],
)
def test_persona_name(spelling, persona):
    assert persona_name(spelling) == persona


def test_persona_name_refuses_tokens_and_strangers():
    for spelling in ("truth", "wizard", "saint_fix"):
        with pytest.raises(ValueError, match="unknown persona"):
            persona_name(spelling)


@pytest.mark.parametrize(
    "spelling",
    [
        "saint_and_fitness",
        "Saint-and-Fitness",
        "saint and fitness",
        "saint_and_fitness_maximizer",
        "fitness_and_saint",
        "fitness_maximizer_and_saint",
    ],
)
def test_family_of_spellings(spelling):
    assert family_of(spelling) == "saint_and_fitness"


def test_family_of_every_family_and_refusals():
    assert [family_of(f) for f in ALL_FAMILIES] == list(ALL_FAMILIES)
    for spelling in ("saint_fitness", "saint_and_genie", "reward_and_money", "x_and_y"):
        with pytest.raises(ValueError, match="not a family name"):
            family_of(spelling)
