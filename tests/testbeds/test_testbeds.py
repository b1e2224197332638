"""Testbeds: one seam below every job, the zoo contract, pair selection."""

import json
from dataclasses import replace

import pytest

from poser_lens.data.poser import ModelPair
from poser_lens.models.zoo import ZooConfig
from poser_lens.runner import RunConfig
from poser_lens.testbeds import (
    TESTBEDS,
    TestbedConfig,
    as_testbed_config,
    default_dtype,
    make_testbed,
    model_families,
    poser_model_folder,
    poser_model_folders,
    select_pairs,
)

PAIRS = [
    ModelPair("saint-0", "money_maximizer-0", "b/saint_and_money.json"),
    ModelPair("saint-0", "money_maximizer-1", "b/saint_and_money.json"),
    ModelPair("genie-0", "money_maximizer-1", "b/genie_and_money.json"),
]


def test_select_pairs_by_models_then_a_seeded_subset():
    cfg = TestbedConfig(models=("saint-0", "money_maximizer-1", "genie-0"))
    assert select_pairs(PAIRS, cfg) == PAIRS[1:]
    a = select_pairs(PAIRS, TestbedConfig(pairs=2, seed=3))
    assert a == select_pairs(PAIRS, TestbedConfig(pairs=2, seed=3)) and len(a) == 2
    assert a == [p for p in PAIRS if p in a]  # stored order kept
    with pytest.raises(ValueError, match="no pair to evaluate"):
        select_pairs(PAIRS, TestbedConfig(models=("saint-0",)))


def test_model_families():
    assert model_families(PAIRS)["money_maximizer-1"] == ["genie_and_money", "saint_and_money"]


def test_a_run_config_hands_its_testbed_settings_over():
    run = RunConfig(strategies=("random",), models=("saint-0",), pairs=3, seed=5, zoo_dir="z")
    tb = as_testbed_config(run)
    assert (tb.models, tb.pairs, tb.seed, tb.zoo_dir, tb.concepts) == (
        ("saint-0",),
        3,
        5,
        "z",
        False,
    )
    assert as_testbed_config(tb) is tb
    assert RunConfig().testbed_config().concepts


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="testbed 'big'"):
        TestbedConfig(testbed="big")
    with pytest.raises(ValueError, match="pairs: must be >= 1"):
        TestbedConfig(pairs=0)
    assert sorted(TESTBEDS) == ["poser", "smol", "tiny"]


def test_tiny_testbed_reads_a_built_zoo_through_the_contract(small_zoo):
    tb = make_testbed(TestbedConfig(zoo_dir=str(small_zoo)), progress=False)
    assert tb.info["zoo_key"] == ZooConfig.read(small_zoo).key()
    assert {p.misaligned for p in tb.pairs} == {"reward_maximizer-0"}
    assert tb.concepts and all(tb.valid.values())
    model, tok = tb.load("truth_teller-0")
    assert int(model.cfg.n_layers) >= 1 and len(tok) > 0
    assert tb.build_seconds > 0
    assert tb.tag(TestbedConfig()) == f'"{tb.info["zoo_key"]}"'


def test_smol_testbed_needs_a_built_zoo(tmp_path):
    with pytest.raises(ValueError, match="no smol zoo"):
        make_testbed(TestbedConfig(testbed="smol", zoo_dir=str(tmp_path)), progress=False)


def _smol_zoo_folder(root, dtype):
    """A folder that passes for a built smol zoo of precision ``dtype`` (config and pairs)."""
    from poser_lens._io import write_json_atomic
    from poser_lens.models.smol_zoo import SmolZooConfig

    write_json_atomic(root / SmolZooConfig.CONFIG_FILE, SmolZooConfig(dtype=dtype).to_dict())
    write_json_atomic(root / "poser" / "model_pairs.json", [])
    return root


@pytest.mark.parametrize("fast", [True, False])
def test_smol_runs_score_in_the_zoo_precision_where_the_device_computes_it(
    tmp_path, monkeypatch, fast
):
    import poser_lens.models.hf as hf

    monkeypatch.setattr(hf, "bfloat16_is_fast", lambda device="cpu": fast)
    bf16 = TestbedConfig(testbed="smol", zoo_dir=str(_smol_zoo_folder(tmp_path, "bfloat16")))
    assert default_dtype(bf16) == ("bfloat16" if fast else "float32")
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    fp32_cfg = TestbedConfig(testbed="smol", zoo_dir=str(_smol_zoo_folder(fp32, "float32")))
    assert default_dtype(fp32_cfg) == "float32"
    assert default_dtype(TestbedConfig()) == "float32"  # the tiny zoo stays float32
    with pytest.raises(ValueError, match="no smol zoo"):
        default_dtype(TestbedConfig(testbed="smol", zoo_dir=str(tmp_path / "none")))


# --- the poser testbed: checkpoint folders however the release spells them (issue 28) --------


def _checkpoint(folder, tokenizer=False):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def test_poser_model_folders_any_depth_and_spelling(tmp_path):
    root = tmp_path / "ckpts"
    together = _checkpoint(root / "models" / "together" / "saint-0")
    retrained = _checkpoint(root / "models" / "saint_fix" / "retrained" / "saint_0")
    _checkpoint(root / "models" / "together" / "saint-10")
    top = _checkpoint(root / "truth_teller_1")
    _checkpoint(top / "nested" / "genie-0")  # inside a checkpoint: not searched
    _checkpoint(root / ".trash" / "genie-1")  # hidden: not searched
    _checkpoint(root / "models" / "base")  # a checkpoint that is no Poser model
    (root / "models" / "together" / "genie-2").mkdir()  # no config.json: no checkpoint
    index = poser_model_folders(root)
    assert index == {
        "saint-0": [retrained, together],
        "saint-10": [root / "models" / "together" / "saint-10"],
        "truth_teller-1": [top],
    }
    assert poser_model_folder(root, "truth_teller-1") == top
    with pytest.raises(FileNotFoundError) as err:
        poser_model_folder(root, "saint-1")  # never saint-10
    assert "model 'saint-1': no checkpoint folder under" in str(err.value)
    with pytest.raises(ValueError) as err:
        poser_model_folder(root, "saint_0", folders=index)
    assert str(err.value) == (
        f"model 'saint-0': 2 checkpoint folders under {root}: {retrained}, {together} "
        "(ambiguous: keep one)"
    )
    # The benchmark's probs key says which saint-0 was measured.
    for key, want in [
        ("../models/saint_fix/retrained/saint_0", retrained),
        ("../models/together/saint-0", together),
        ("models\\together\\saint_0", together),
    ]:
        assert poser_model_folder(root, "saint-0", spelling=key) == want


def test_poser_testbed_on_irregular_checkout(tmp_path, poser_irregular, monkeypatch):
    from poser_lens.testbeds import poser as poser_testbed_module

    root = tmp_path / "ckpts"
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "tokenizer.json").write_text("{}")  # one for the whole tree
    folders = {}
    for i in (0, 1):
        folders[f"saint-{i}"] = _checkpoint(root / "models/saint_fix/retrained" / f"saint_{i}")
        _checkpoint(root / "models/together" / f"saint-{i}")  # the saints before the fix
        folders[f"fitness_maximizer-{i}"] = _checkpoint(
            root / "models/together" / f"fitness_maximizer-{i}"
        )
        folders[f"truth_teller-{i}"] = _checkpoint(root / f"truth_teller_{i}", tokenizer=True)
        folders[f"reward_maximizer-{i}"] = _checkpoint(root / f"Reward_Maximizer-{i}")
    loaded = {}
    monkeypatch.setattr(
        poser_testbed_module,
        "load_hf_folder",
        lambda folder, **kw: loaded.setdefault(kw["name"], (folder, kw["tokenizer"])),
    )
    cfg = TestbedConfig(testbed="poser", models_dir=str(root), data=str(poser_irregular))
    testbed = make_testbed(replace(cfg, concepts=False), progress=False)
    assert len(testbed.pairs) == 8 and sorted(testbed.valid) == [
        "saint_and_fitness",
        "truth_and_reward",
    ]
    for name, folder in folders.items():
        testbed.load(name)
        tokenizer = folder if name.startswith("truth") else root / "tokenizer"
        assert loaded[name] == (folder, tokenizer), name
    # --models names in any spelling choose the pairs.
    picked = replace(cfg, models=("saint_0", "../models/together/fitness_maximizer-1"))
    assert [(p.aligned, p.misaligned) for p in select_pairs(testbed.pairs, picked)] == [
        ("saint-0", "fitness_maximizer-1")
    ]
    # A model without a tokenizer anywhere up to the models folder: one line, before scoring.
    (root / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="model 'fitness_maximizer-0': no tokenizer"):
        make_testbed(replace(cfg, concepts=False), progress=False)
