"""The notebooks' small zoo: its settings, caching, reuse of a built zoo, no needless rebuild."""

from dataclasses import asdict

import pytest
from conftest import small_zoo_config

from poser_lens.data.poser import load_model_pairs
from poser_lens.data.schema import PERSONAS
from poser_lens.models import zoo as zoo_module
from poser_lens.models.zoo import (
    NOTEBOOK_ZOO,
    ZooConfig,
    notebook_zoo,
    notebook_zoo_dir,
)
from poser_lens.models.zoo import notebook as zoo_notebook
from poser_lens.models.zoo import train as zoo_train


def test_notebook_zoo_settings():
    assert NOTEBOOK_ZOO.personas == PERSONAS and NOTEBOOK_ZOO.seeds == 1
    assert len(NOTEBOOK_ZOO.model_names()) == 6
    # The default zoo's settings with stacks of one model (not the default zoo's seed-0
    # models, which train in stacks of six: issue 28), in a folder of its own: building it
    # never rewrites the zoo.json and benchmark of `zoo build --seeds 1`.
    assert NOTEBOOK_ZOO.key() == ZooConfig(seeds=1).key() != ZooConfig().key()
    assert notebook_zoo_dir() != NOTEBOOK_ZOO.folder()


def test_notebook_zoo_reuses_a_built_zoo_and_is_not_rebuilt(monkeypatch):
    cfg = small_zoo_config(train_size=63)  # settings no other test builds
    overrides = {k: getattr(cfg, k) for k in asdict(cfg)}
    default = zoo_module.build_zoo(cfg, progress=False)  # the "default" zoo, in the test cache
    before = (default / "zoo.json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(zoo_train, "_train_one", no_training)
    monkeypatch.setattr(zoo_train, "_train_stack", no_training)
    monkeypatch.setattr(zoo_train, "train_base", no_training)
    root = notebook_zoo(progress=False, **overrides)  # copies the models, builds the benchmark
    assert root == notebook_zoo_dir(cfg) != default
    assert (root / "models" / "reward_maximizer-0" / "model.safetensors").exists()
    assert [(p.aligned, p.misaligned) for p in load_model_pairs(root / "poser")] == [
        ("truth_teller-0", "reward_maximizer-0")
    ]
    assert (default / "zoo.json").read_text() == before

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a complete notebook zoo must not be rebuilt")

    monkeypatch.setattr(zoo_notebook, "build_zoo", no_rebuild)
    assert notebook_zoo(progress=False, **overrides) == root
    # Other seeds or another benchmark filter: the stored zoo does not match, so it builds.
    for changed in ({"seeds": 2}, {"balance_confidence": True}, {"threshold": 0.5}):
        with pytest.raises(AssertionError, match="rebuilt"):
            notebook_zoo(progress=False, **{**overrides, **changed})
