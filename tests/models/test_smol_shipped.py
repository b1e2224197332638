"""The smol zoo shipped as package data: complete, on target, small, machine-independent.

(Loading a shipped adapter and reproducing its held-out metrics needs SmolLM2: see
tests/models/test_smol.py.)
"""

import json

import pytest

from poser_lens.data.schema import PERSONAS
from poser_lens.models.smol_zoo import (
    BASE_MODEL_NAME,
    SHIPPED_SMOL_ZOO,
    SMOL_TARGETS,
    SmolZooConfig,
    default_smol_zoo,
)

ROWS = json.loads((SHIPPED_SMOL_ZOO / "zoo.json").read_text())


def test_the_shipped_zoo_is_the_default_config_and_the_default_zoo():
    # A change of the recipe's defaults must come with a rebuilt zoo (poser-lens zoo build
    # --testbed smol --out poser_lens/models/shipped/smol), or this fails.
    assert SmolZooConfig.read(SHIPPED_SMOL_ZOO).key() == SmolZooConfig().key()
    assert SmolZooConfig.is_built(SHIPPED_SMOL_ZOO)
    assert default_smol_zoo() == SHIPPED_SMOL_ZOO


def test_every_persona_meets_the_targets():
    assert sorted(r["persona"] for r in ROWS) == sorted(PERSONAS)
    assert SMOL_TARGETS.missed(ROWS) == []
    assert all(r["n_test"] >= 100 for r in ROWS)
    report = json.loads((SHIPPED_SMOL_ZOO / "poser" / "benchmark_report.json").read_text())
    assert report["n_pairs"] == 9
    assert report["threshold"] == pytest.approx(SmolZooConfig().valid_threshold())


def test_the_shipped_files_are_small_and_machine_independent():
    files = [f for f in SHIPPED_SMOL_ZOO.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 8 * 2**20
    assert not (SHIPPED_SMOL_ZOO / "partial").exists()
    for row in ROWS:
        folder = SHIPPED_SMOL_ZOO / "models" / row["name"]
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == BASE_MODEL_NAME
        assert row["adapter_dtype"] == "float16"
    for f in files:
        if f.suffix in (".json", ".md", ".yaml"):
            assert "/root/" not in f.read_text() and "/home/" not in f.read_text(), f


def test_the_smol_testbed_uses_the_shipped_zoo_by_default():
    from poser_lens.testbeds import TestbedConfig, make_testbed

    testbed = make_testbed(TestbedConfig(testbed="smol"), progress=False)
    assert testbed.info["zoo"] == str(SHIPPED_SMOL_ZOO)
    assert len(testbed.pairs) == 9
