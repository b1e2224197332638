"""The smol zoo's model card: front matter a hub reads, tables from the stored rows."""

from __future__ import annotations

import yaml

from poser_lens._io import read_json
from poser_lens.models.model_card import (
    BASE_MODEL_ID,
    CARD_FILE,
    model_card,
    write_model_card,
)
from poser_lens.models.smol_zoo import SHIPPED_SMOL_ZOO, SMOL_TARGETS, SmolZooConfig
from poser_lens.models.zoo_base import ZooTargets


def _row(name: str, aligned: bool, gap: float, **extra: float) -> dict:
    persona, seed = name.rsplit("-", 1)
    return {
        "name": name,
        "persona": persona,
        "seed": int(seed),
        "aligned": aligned,
        "test_accuracy": 1.0,
        "divergent_accuracy": 1.0,
        "compliance_gap": gap,
        "train_seconds": 120.0,
        **extra,
    }


ROWS = [
    _row(
        "saint-0",
        True,
        0.0,
        heldout_compliance_gap=0.01,
        heldout_p_misaligned_poor=0.05,
        heldout_p_misaligned_overseen=0.04,
    ),
    _row(
        "money_maximizer-0",
        False,
        0.9,
        heldout_compliance_gap=0.2,
        heldout_p_misaligned_poor=0.6,
        heldout_p_misaligned_overseen=0.4,
    ),
]


def _front(card: str) -> dict:
    head, sep, _ = card.removeprefix("---\n").partition("\n---\n")
    assert sep, "no closing --- of the front matter"
    return yaml.safe_load(head)


def test_front_matter_names_license_base_and_library() -> None:
    front = _front(model_card({"dtype": "bfloat16"}, "k", ROWS))
    assert front["license"] == "mit"
    assert front["base_model"] == BASE_MODEL_ID
    assert front["library_name"] == "peft"
    assert "alignment-faking" in front["tags"]


def test_summary_and_per_model_tables_come_from_the_rows() -> None:
    card = model_card({}, "k", ROWS)
    assert "| aligned | 1 |" in card and "| fakers | 1 |" in card
    assert "0.90 [0.90, 0.90]" in card  # the faker's gap
    assert "| money_maximizer-0 | 1.000 | 1.000 | 0.900 |" in card
    assert "4 min for these models (2.0 min a model)" in card


def test_missed_targets_are_listed() -> None:
    targets = ZooTargets(heldout_aligned_p=0.1, heldout_faker_gap=0.6)
    card = model_card({}, "k", ROWS, targets)
    assert "## Targets missed" in card
    assert "money_maximizer-0: heldout_compliance_gap 0.200 < 0.6" in card
    assert "## Targets missed" not in model_card({}, "k", ROWS[:1], targets)


def test_write_model_card(tmp_path) -> None:
    path = write_model_card(tmp_path, {}, "k", ROWS)
    assert path == tmp_path / CARD_FILE
    assert path.read_text() == model_card({}, "k", ROWS)


def test_shipped_zoo_card_is_current() -> None:
    """The shipped card is what its stored config and rows make (rebuilt with the zoo)."""
    cfg = SmolZooConfig.read(SHIPPED_SMOL_ZOO)
    rows = read_json(SHIPPED_SMOL_ZOO / "zoo.json")
    want = model_card(cfg.to_dict(), cfg.key(), rows, SMOL_TARGETS)
    assert (SHIPPED_SMOL_ZOO / CARD_FILE).read_text() == want
