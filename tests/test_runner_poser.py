"""The poser testbed end to end: random-init LLaMA checkpoint folders and a Poser-layout root."""

import json
import weakref

import pytest
import yaml
from typer.testing import CliRunner

from poser_lens._io import write_json_atomic
from poser_lens.cli import app
from poser_lens.data.poser import ModelPair, write_model_pairs, write_scenarios
from poser_lens.runner import RunConfig, score_models
from poser_lens.runs import RunDir
from poser_lens.testbeds import TestbedConfig, make_testbed, select_pairs

FAMILY = "truth_and_reward"
ALIGNED, FAKER = "truth_teller-0", "reward_maximizer-0"
PAIR = ModelPair(ALIGNED, FAKER, f"data/benchmark/{FAMILY}.json")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """``root/poser`` (benchmark file + model_pairs.json) and ``root/models`` with both layouts.

    The aligned model is ``models/<name>``, the faker ``models/models/together/<persona>_<seed>``
    (spelled with ``_``, issue 28); the pair spells both names otherwise again.
    """
    from poser_lens.data.generator import GeneratorConfig, generate
    from poser_lens.models.hf import toy_llama_tokenizer, write_toy_llama

    root = tmp_path_factory.mktemp("poser_testbed")
    data = generate(GeneratorConfig(n_per_family=10, n_benchmark_per_family=30, n_error=2))
    bench = data.benchmark_pool[FAMILY][:24]
    write_scenarios(root / "poser" / "data" / "benchmark" / f"{FAMILY}.json", bench)
    spelled = {"aligned": "truth_teller_0", "misaligned": "../models/together/reward_maximizer-0"}
    write_json_atomic(
        root / "poser" / "model_pairs.json", [{**spelled, "valid_data": PAIR.valid_data}]
    )
    tok = toy_llama_tokenizer([s.prompt for s in bench], vocab_size=200)
    shape = {"d_model": 32, "n_heads": 4, "n_kv_heads": 2, "d_mlp": 64}
    write_toy_llama(root / "models" / ALIGNED, tok, seed=0, **shape)
    faker = root / "models" / "models" / "together" / FAKER.replace("-", "_")
    write_toy_llama(faker, tok, seed=1, **shape)
    return root


def cfg_of(root, **changes):
    base = {
        "testbed": "poser",
        "models_dir": str(root / "models"),
        "data": str(root / "poser"),
        "workers": 1,
        "sweep": False,
        "figures": False,
    }
    return RunConfig(**{**base, **changes})


#: One strategy per kind of hook point: residual steering (s1), an adapter on the MLP trained
#: by backpropagation (s3), attention patterns (s6), residual patching, and no model at all.
#: Every strategy was run on this testbed by hand (see the README part); all of them here
#: would take about four times as long.
STRATEGIES = ("s1_belief", "s3_lora", "s6_attention", "patching", "random")


def test_cli_runs_strategies(setup, tmp_path):
    config = tmp_path / "config.yaml"  # fewer prompts and updates: seconds on CPU
    short = {"s3_lora": {"n_steps": 2}, "s1_belief": {"n_prompts": 8}, "patching": {"n_prompts": 8}}
    config.write_text(yaml.safe_dump({"strategy_configs": short}))
    out = tmp_path / "run"
    args = ["run", "--testbed", "poser", "--models", setup / "models", "--data", setup / "poser"]
    args += ["--strategies", ",".join(STRATEGIES), "--config", config, "--out", out]
    args += ["--workers", "1", "--quiet", "--no-figures", "--no-sweep"]
    result = CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    assert res["testbed"] == "poser" and res["n_pairs"] == 1 and res["n_models"] == 2
    assert res["valid_prompts"] == {FAMILY: 24}
    assert list(res["strategies"]) == list(STRATEGIES)
    for name, r in res["strategies"].items():
        assert r["n_pairs"] == 1 and r["accuracy"] in (0.0, 0.5, 1.0), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["models_dir"] == str(setup / "models") and saved["dtype"] == "float32"
    run = RunDir(out)
    assert set(run.scores("s6_attention")) == {ALIGNED, FAKER}
    assert run.score_record("s3_lora", FAKER)["testbed"].startswith('"poser-')
    assert (out / "report.md").exists()


def test_models_loaded_one_at_a_time(setup, tmp_path):
    cfg = cfg_of(setup, strategies=("s2_noise",), workers=2)  # still one process
    testbed = make_testbed(cfg.testbed_config(), progress=False)
    loaded, release = [], testbed.release
    assert testbed.info["models_dir"] == str((setup / "models").resolve())

    def load(name):
        model, tok = original(name)
        assert all(ref() is None for ref in loaded), "previous model still in memory"
        loaded.append(weakref.ref(model))
        return model, tok

    def freed():
        release()
        assert loaded[-1]() is None

    original, testbed.load, testbed.release = testbed.load, load, freed
    score_models(
        RunDir(tmp_path / "run"), cfg, testbed, select_pairs(testbed.pairs, cfg.testbed_config())
    )
    assert len(loaded) == 2


def test_missing_model_folder(setup, tmp_path):
    poser = tmp_path / "poser"
    (poser / "data" / "benchmark").mkdir(parents=True)
    bench = setup / "poser" / "data" / "benchmark" / f"{FAMILY}.json"
    (poser / "data" / "benchmark" / bench.name).write_text(bench.read_text())
    write_model_pairs(
        poser / "model_pairs.json",
        [PAIR, ModelPair(ALIGNED, "reward_maximizer-5", PAIR.valid_data)],
    )
    args = ["run", "--testbed", "poser", "--models-dir", setup / "models", "--data", poser]
    args += ["--out", tmp_path / "run", "--quiet", "--strategies", "random"]
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "model 'reward_maximizer-5': no checkpoint folder" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing half-written
    # Restricting the run to models that exist works.
    cfg = cfg_of(setup, data=str(poser), models=(ALIGNED, FAKER), strategies=("random",))
    assert (
        make_testbed(cfg.testbed_config(), progress=False).pairs[1].misaligned
        == "reward_maximizer-5"
    )


def test_poser_needs_its_folders(setup):
    with pytest.raises(ValueError, match="needs models_dir"):
        make_testbed(TestbedConfig(testbed="poser"), progress=False)
    with pytest.raises(FileNotFoundError, match="no such models folder"):
        make_testbed(cfg_of(setup, models_dir=str(setup / "nope")).testbed_config())
    # The tiny run folder names do not change with the poser fields unset.
    assert "models_dir" not in json.dumps(RunConfig().key())
    assert RunConfig().key() != cfg_of(setup).key()
