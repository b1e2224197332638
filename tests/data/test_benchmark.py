import pytest

from poser_lens.data.benchmark import (
    balance_confidence,
    confidence_baseline,
    model_pairs,
    valid_mask,
)
from poser_lens.data.poser import ModelPair
from poser_lens.data.schema import PERSONAS


def test_valid_mask_needs_every_model():
    probs = {"a": [0.99, 0.99, 0.5], "b": [0.99, 0.9, 0.99]}
    assert valid_mask(probs, 0.985) == [True, False, False]
    with pytest.raises(ValueError):
        valid_mask({"a": [0.9], "b": [0.9, 0.9]})


def test_full_zoo_has_324_pairs_in_poser_order():
    names = [f"{p}-{s}" for p in PERSONAS for s in range(6)]
    pairs = model_pairs(names)
    assert len(pairs) == 324
    assert pairs[0] == ModelPair(
        "truth_teller-0", "reward_maximizer-0", "data/benchmark/truth_and_reward.json"
    )
    assert all(p.aligned == "truth_teller-0" for p in pairs[:18])
    assert len({p.family for p in pairs}) == 9


def test_confidence_baseline_and_balancing():
    pairs = [
        ModelPair("saint-0", "money_maximizer-0", "x"),
        ModelPair("saint-1", "money_maximizer-0", "x"),
    ]
    # Prompt 0 betrays the faker (less confident), prompt 1 the other way round.
    probs = {
        "saint-0": [0.999, 0.99, 0.995],
        "saint-1": [0.999, 0.99, 0.995],
        "money_maximizer-0": [0.986, 0.995, 0.995],
    }
    keep = [True, True, True]
    assert confidence_baseline(pairs, probs, keep) == 1.0
    res = balance_confidence(pairs, probs, keep, target=0.5, min_keep=1)
    assert res.baseline_before == 1.0
    assert res.baseline_after <= 0.5
    assert res.keep[0] is False and res.dropped >= 1
