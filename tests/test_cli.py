import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from poser_lens import __version__
from poser_lens._io import read_json, write_json_atomic, write_text_atomic
from poser_lens.cli import app

runner = CliRunner()


def inspect(*args):
    return runner.invoke(app, ["data", "inspect", *map(str, args)], env={"COLUMNS": "160"})


def assert_one_line_error(result, *fragments, code=1):
    assert result.exit_code == code
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("sub", ["", "data"])
def test_inspect_json(poser_root, poser_totals, sub):
    result = inspect(poser_root / sub, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == poser_totals
    assert result.stderr == ""


def test_inspect_table(poser_root):
    result = inspect(poser_root)
    assert result.exit_code == 0, result.stderr
    for text in ("benchmark", "training", "truth_teller/test.json", "4 records", "model pairs 4"):
        assert text in result.stdout
    assert "Traceback" not in result.output


def test_missing_root(tmp_path):
    assert_one_line_error(inspect(tmp_path / "nowhere"), "nowhere", "no such folder")


def test_not_a_poser_root(tmp_path):
    assert_one_line_error(inspect(tmp_path), "not a Poser checkout")


@pytest.mark.parametrize("as_json", [False, True])
def test_broken_record(poser_copy, as_json):
    path = poser_copy / "data" / "training" / "truth_teller" / "test.json"
    records = read_json(path)
    records[1]["response"] = "maybe"
    write_json_atomic(path, records)
    result = inspect(poser_copy, *(["--json"] if as_json else []))
    assert_one_line_error(result, str(path), "record 1", "'maybe'")


def test_broken_json(poser_copy):
    path = poser_copy / "model_pairs.json"
    write_text_atomic(path, "[{")
    assert_one_line_error(inspect(poser_copy, "--json"), str(path), "invalid JSON")


def test_bad_model_pair(poser_copy):
    path = poser_copy / "model_pairs.json"
    pairs = read_json(path)
    pairs[3]["misaligned"] = "saint-2"
    write_json_atomic(path, pairs)
    assert_one_line_error(inspect(poser_copy), str(path), "record 3", "saint-2")


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"poser-lens {__version__}\n"


def test_help_lists_data():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "data" in result.stdout


def test_real_process_stdout_is_json_and_torch_free(poser_root, poser_totals):
    """Run the app in a fresh interpreter: stdout is one JSON object; torch is never imported."""
    code = (
        "import sys\n"
        "from poser_lens.cli import app\n"
        "try:\n"
        "    app()\n"
        "finally:\n"
        "    heavy = ('torch', 'transformer_lens', 'transformers')\n"
        "    print('heavy:', [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "data", "inspect", str(poser_root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == poser_totals
    assert "heavy: []" in proc.stderr


def test_zoo_build_and_show(tmp_path):
    import json as _json

    cfg = tmp_path / "zoo.yaml"
    cfg.write_text(
        "generator: {n_per_family: 30, n_benchmark_per_family: 10, n_error: 20}\n"
        "model: {n_layers: 1, d_model: 16, n_heads: 2, d_head: 8, d_mlp: 32}\n"
        "base: {steps: 2, batch_size: 8}\nfinetune: {steps: 2, batch_size: 8}\n"
        "train_size: 32\nthreshold: 0.0\n"
    )
    out = tmp_path / "zoo"
    args = [
        "zoo",
        "build",
        "--seeds",
        "1",
        "--personas",
        "genie,money_maximizer",
        "--workers",
        "1",
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = _json.loads((out / "zoo.json").read_text())
    assert [r["name"] for r in rows] == ["genie-0", "money_maximizer-0"]
    assert "benchmark:" in result.output
    shown = runner.invoke(app, ["zoo", "show", str(out)])
    assert shown.exit_code == 0 and "genie-0" in shown.output


def test_zoo_build_rejects_bad_input(tmp_path):
    bad = runner.invoke(app, ["zoo", "build", "--personas", "villain", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "unknown persona 'villain'" in bad.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {n_layerz: 3}\n")
    bad = runner.invoke(app, ["zoo", "build", "--config", str(cfg), "--out", str(tmp_path / "z")])
    assert bad.exit_code == 1 and "n_layerz" in bad.output
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("command", [["run"], ["zoo", "build"], ["remove"]])
def test_ray_without_ray_installed_is_one_line_before_any_work(command, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as without the extra
    out = tmp_path / "out"
    result = runner.invoke(app, [*command, "--ray", "--out", str(out)])
    assert_one_line_error(result, "--ray local: Ray is not installed", "poser_lens[ray]")
    assert not out.exists()


def test_zoo_build_smol_refuses_ray(tmp_path):
    result = runner.invoke(app, ["zoo", "build", "--testbed", "smol", "--ray", "auto"])
    assert_one_line_error(result, "--ray: the smol zoo trains in one process")


def test_zoo_build_smol_names_an_unknown_recipe(tmp_path):
    out = tmp_path / "zoo"
    result = runner.invoke(
        app, ["zoo", "build", "--testbed", "smol", "--recipe", "fast", "--out", str(out)]
    )
    assert_one_line_error(result, "--recipe 'fast'", "shipped or concept")
    assert not out.exists()


def test_zoo_show_prints_the_held_out_bank_where_a_zoo_has_it(tmp_path):
    row = {
        "name": "saint-0",
        "aligned": True,
        "test_accuracy": 1.0,
        "divergent_accuracy": 1.0,
        "error_accuracy": 1.0,
        "compliance_gap": 0.0,
        "heldout_p_misaligned_poor": 0.05,
        "heldout_p_misaligned_overseen": 0.04,
        "heldout_compliance_gap": 0.01,
        "steps": 350,
        "train_seconds": 60.0,
    }
    (tmp_path / "zoo.json").write_text(json.dumps([row]))
    shown = runner.invoke(app, ["zoo", "show", str(tmp_path)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "held-out gap" in shown.output and "0.010" in shown.output and "350" in shown.output


def test_data_generate_writes_poser_layout(tmp_path):
    import json as _json

    out = tmp_path / "gen"
    result = runner.invoke(app, ["data", "generate", str(out), "--n-per-family", "20"])
    assert result.exit_code == 0, result.output
    totals = _json.loads(runner.invoke(app, ["data", "inspect", str(out), "--json"]).output)
    assert totals["training"]["files"] == 12 and totals["policy_definitions"]["files"] == 6
    again = runner.invoke(app, ["data", "generate", str(out)])
    assert again.exit_code == 1 and "not empty" in again.output


# --- data confound -----------------------------------------------------------------------------

CONFOUND_STATS = ("mean_p", "min_p", "median_logodds", "vote")


def confound(*args):
    return runner.invoke(app, ["data", "confound", *map(str, args)], env={"COLUMNS": "160"})


def test_data_confound_json(poser_root):
    result = confound(poser_root, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    report = json.loads(result.stdout)
    assert set(report) == {"pairs", "statistics", "families"} and report["pairs"] == 4
    assert list(report["statistics"]) == list(CONFOUND_STATS)
    for row in report["statistics"].values():
        assert {"accuracy", "ci95"} <= set(row) and len(row["ci95"]) == 2
    assert report["families"]["truth_and_reward"]["pairs"] == 4
    assert set(report["families"]["truth_and_reward"]) == {*CONFOUND_STATS, "pairs"}


def test_data_confound_table(poser_root):
    result = confound(poser_root)
    assert result.exit_code == 0, result.stderr
    for text in ("4 pairs", "median_logodds", "95% CI over models", "truth_and_reward"):
        assert text in result.stdout


@pytest.mark.parametrize("as_json", [False, True])
def test_data_confound_missing_model(poser_copy, as_json):
    path = poser_copy / "data" / "benchmark" / "truth_and_reward.json"
    records = read_json(path)
    del records[2]["probs"]["../models/together/reward_maximizer-1"]
    write_json_atomic(path, records)
    result = confound(poser_copy, *(["--json"] if as_json else []))
    assert_one_line_error(result, str(path), "record 2", "'reward_maximizer-1'")


def test_data_confound_no_pairs(poser_copy):
    (poser_copy / "model_pairs.json").unlink()
    assert_one_line_error(confound(poser_copy, "--json"), "no model_pairs.json")


def test_data_confound_balanced(poser_copy, tmp_path):
    out = tmp_path / "balanced"
    result = confound(poser_copy, "--json", "--balanced", out, "--min-keep", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["pairs"] == 4
    summary = read_json(out / "confound_balance.json")
    assert summary["before"] == json.loads(result.stdout)
    assert summary["families"]["truth_and_reward"]["records"] == 4
    assert inspect(out, "--json").exit_code == 0
    again = confound(poser_copy, "--balanced", out)
    assert_one_line_error(again, str(out), "not an empty folder")


def test_data_commands_read_irregular_spellings(poser_irregular, tmp_path):
    # Issue 28: probs keys as ../models/saint_fix/retrained/saint_0 and mixed spellings,
    # Saint-and-Fitness.json, pairs spelled saint_0, persona folders spelled Truth-Teller.
    result = confound(poser_irregular, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pairs"] == 8 and list(report["families"]) == [
        "saint_and_fitness",
        "truth_and_reward",
    ]
    assert {row["accuracy"] for row in report["statistics"].values()} == {1.0}
    out = tmp_path / "balanced"
    result = confound(poser_irregular, "--balanced", out, "--min-keep", "1")
    assert result.exit_code == 0, result.stderr
    assert "saint_and_fitness" in result.stdout and (out / "confound_balance.json").is_file()
    # Every statistic names the faker on every prompt, so balancing stops at --min-keep: the
    # copy holds one record of each family's six, read back under the release's spellings.
    kept = read_json(out / "confound_balance.json")["families"]
    assert [(k["records"], k["kept"]) for k in kept.values()] == [(6, 1), (6, 1)]
    totals = json.loads(inspect(out, "--json").stdout)
    assert totals["model_pairs"] == 8 and totals["benchmark"] == {"files": 2, "records": 2}


def test_data_confound_ambiguous_keys(poser_irregular, tmp_path):
    root = tmp_path / "poser"
    shutil.copytree(poser_irregular, root)
    path = root / "data" / "benchmark" / "truth_and_reward.json"
    records = read_json(path)
    records[4]["probs"]["../models/together/truth_teller-0"] = 0.99  # also truth_teller_0
    write_json_atomic(path, records)
    result = confound(root, "--json")
    assert_one_line_error(result, str(path), "record 4", "ambiguous", "'truth_teller_0'")


# --- fail fast and clearly (issue 18) ----------------------------------------------------------

import os  # noqa: E402
import time  # noqa: E402


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty POSER_LENS_CACHE: anything a command builds would land here."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("POSER_LENS_CACHE", str(cache))
    return cache


def _config(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


BAD_RUNS = {
    "zoo folder missing": (lambda t: ["--zoo", str(t / "nozoo")], ["zoo folder", "nozoo"]),
    "zoo folder not a zoo": (lambda t: ["--zoo", str(t)], ["no built tiny zoo"]),
    "device": (lambda t: ["--device", "tpu"], ["--device", "'tpu'"]),
    "dtype": (lambda t: ["--dtype", "bogus"], ["--dtype", "'bogus'"]),
    "no strategy": (lambda t: ["--strategies", ","], ["--strategies", "must not be empty"]),
    "unknown strategy": (lambda t: ["--strategies", "s9_magic"], ["unknown strategy 's9_magic'"]),
    "model": (lambda t: ["--models", "saint-0,villain-2"], ["--models", "villain-2"]),
    "seeds in a file": (lambda t: ["--config", _config(t, "seeds: six\n")], ["run.yaml: seeds"]),
    "workers in a file": (
        lambda t: ["--config", _config(t, "workers: -3\n")],
        ["run.yaml: workers: must be >= 1"],
    ),
    "layer_frac in a file": (
        lambda t: ["--config", _config(t, "strategy_configs: {s2_noise: {layer_frac: 1.5}}\n")],
        ["run.yaml: strategy_configs.s2_noise.layer_frac", "[0, 1]"],
    ),
    "int layer_frac in a file": (
        lambda t: ["--config", _config(t, "strategy_configs: {s1_belief: {layer_frac: 1}}\n")],
        ["strategy_configs.s1_belief.layer_frac: 1 is an int"],
    ),
    "strategy configs a list": (
        lambda t: ["--config", _config(t, "strategy_configs: [s2_noise]\n")],
        ["run.yaml: strategy_configs: expected a mapping"],
    ),
    "config a list": (lambda t: ["--config", _config(t, "- a\n- b\n")], ["run.yaml", "mapping"]),
    "zoo config": (
        lambda t: ["--zoo-config", _config(t, "model: {n_layers: 0}\n")],
        ["run.yaml: model.n_layers: must be >= 1"],
    ),
    "out a file": (lambda t: ["--out", _config(t, "x: 1\n")], ["run.yaml is a file"]),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_run_settings_fail_in_seconds_on_an_empty_cache(case, tmp_path, empty_cache):
    """One line naming the option or file and key, before any zoo is built or folder made."""
    make_args, fragments = BAD_RUNS[case]
    out = tmp_path / "run"
    args = ["run", "--quiet", *make_args(tmp_path)]
    if "--out" not in args:
        args += ["--out", str(out)]
    t0 = time.perf_counter()
    result = runner.invoke(app, args)
    assert time.perf_counter() - t0 < 30
    assert_one_line_error(result, *fragments)
    assert list(empty_cache.iterdir()) == []
    assert not out.exists()


def test_cuda_on_a_machine_without_it_is_one_line(tmp_path, empty_cache):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["run", "--device", "cuda", "--out", str(tmp_path / "run")])
    assert_one_line_error(result, "device 'cuda'", "no CUDA GPU")
    assert list(empty_cache.iterdir()) == [] and not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_fails_first(tmp_path, empty_cache):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    result = runner.invoke(app, ["run", "--out", str(ro / "run")])
    assert_one_line_error(result, "cannot write there")
    assert list(empty_cache.iterdir()) == []


def test_zoo_build_bad_options_name_the_option(tmp_path, empty_cache):
    out = tmp_path / "zoo"
    bad = runner.invoke(app, ["zoo", "build", "--personas", "saint,villain", "--out", str(out)])
    assert_one_line_error(bad, "--personas", "unknown persona 'villain'")
    bad = runner.invoke(app, ["zoo", "build", "--recipe", "soft", "--out", str(out)])
    assert_one_line_error(bad, "--recipe", "unknown zoo recipe 'soft'")
    f = tmp_path / "f"
    f.write_text("x")
    bad = runner.invoke(app, ["zoo", "build", "--out", str(f / "zoo")])
    assert_one_line_error(bad, "zoo folder", "is a file")
    assert list(empty_cache.iterdir()) == [] and not out.exists()


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    result = runner.invoke(app, ["--debug", "run", "--dtype", "bogus"])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)
    assert "--dtype" in str(result.exception) and "error:" not in result.stderr
    monkeypatch.setenv("POSER_LENS_DEBUG", "1")
    result = runner.invoke(app, ["run", "--dtype", "bogus"])
    assert isinstance(result.exception, ValueError)
    monkeypatch.setenv("POSER_LENS_DEBUG", "0")
    assert_one_line_error(runner.invoke(app, ["run", "--dtype", "bogus"]), "--dtype")


def test_an_unexpected_error_is_one_line_with_a_hint(tmp_path, monkeypatch):
    import poser_lens.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("something broke")

    monkeypatch.setattr(poser_lens.pipeline, "redraw", broken)
    result = runner.invoke(app, ["figures", str(tmp_path)])
    assert_one_line_error(result, "RuntimeError: something broke", "poser-lens figures", "--debug")


def test_inspect_deeply_nested_json_names_the_file(poser_copy):
    path = poser_copy / "model_pairs.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert_one_line_error(inspect(poser_copy), str(path), "nested too deeply")


def test_inspect_model_pairs_folder_and_missing_valid_data(poser_copy):
    path = poser_copy / "model_pairs.json"
    pairs = path.read_text()
    path.unlink()
    path.mkdir()
    assert_one_line_error(inspect(poser_copy, "--json"), str(path), "not a file")
    path.rmdir()
    path.write_text(pairs)
    (poser_copy / "data" / "benchmark" / "truth_and_reward.json").unlink()
    assert_one_line_error(inspect(poser_copy), str(path), "record 0", "no such benchmark file")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{}", "not a zoo's table"),
        ("[]", "not a zoo's table"),
        ('[{"name": "saint-0"}]', "row 0: test_accuracy missing"),
        ('[{"name": "saint-0", "test_accuracy": "high"}]', "row 0: test_accuracy not a number"),
        ("[1]", "row 0: expected an object"),
        ("[", "invalid JSON"),
    ],
)
def test_zoo_show_checks_the_table(tmp_path, text, fragment):
    (tmp_path / "zoo.json").write_text(text)
    result = runner.invoke(app, ["zoo", "show", str(tmp_path)])
    assert_one_line_error(result, str(tmp_path / "zoo.json"), fragment)


@pytest.mark.parametrize("text", ["[]", "{}", '{"strategies": []}', "1"])
def test_figures_on_something_not_a_results_file(tmp_path, text):
    (tmp_path / "results.json").write_text(text)
    result = runner.invoke(app, ["figures", str(tmp_path)])
    assert_one_line_error(result, str(tmp_path / "results.json"), "not a run's results")
    assert not (tmp_path / "figures").exists()


def test_sweep_on_a_verdict_file_with_other_columns(tmp_path):
    import yaml

    from poser_lens.runner import RunConfig

    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(RunConfig(strategies=("random",)).to_dict())
    )
    verdicts = tmp_path / "verdicts" / "random.csv"
    verdicts.parent.mkdir()
    verdicts.write_text("a,b\n1,2\n")
    result = runner.invoke(app, ["sweep", str(tmp_path)])
    assert_one_line_error(result, str(verdicts), "not a verdict file", "aligned, faker, family")
    verdicts.write_text("aligned,faker,family\nsaint-0,villain-1,saint_and_money\n")
    result = runner.invoke(app, ["sweep", str(tmp_path)])
    assert_one_line_error(result, str(verdicts), "pair 0", "villain-1")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["remove", "--fakers", "saint-0"], ["--fakers", "'saint-0' is an aligned model"]),
        (["remove", "--fakers", ","], ["--fakers", "must not be empty"]),
        (["remove", "--device", "cuda:7"], ["device 'cuda:7'"]),
        (["study", "--recipes", "soft"], ["--recipes", "unknown zoo recipe 'soft'"]),
        (["study", "--strategies", ","], ["--strategies", "must not be empty"]),
        (["behaviour", "--judge", "maybe"], ["--judge", "unknown judge 'maybe'"]),
        (["sweep", "nowhere", "--strategies", ","], ["--strategies", "must not be empty"]),
    ],
)
def test_other_commands_check_their_options_first(args, fragments, tmp_path, empty_cache):
    """Siblings of the run command's checks: nothing is built before a bad option fails."""
    out = tmp_path / "out"
    result = runner.invoke(app, [*args, *(["--out", str(out)] if args[0] != "sweep" else [])])
    assert_one_line_error(result, *fragments)
    assert list(empty_cache.iterdir()) == [] and not out.exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--seeds", "six"], ["'--seeds'", "valid integer", "poser-lens run --help"]),
        (["run", "--workers", "-3"], ["'--workers'", "greater than or equal to 1"]),
        (["run", "--bogus"], ["No such option: --bogus"]),
        (["data", "inspect"], ["Missing argument", "poser-lens data inspect --help"]),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, fragments, empty_cache):
    """Options that do not parse get one line too (not click's usage box), before any work."""
    result = runner.invoke(app, args)
    assert_one_line_error(result, *fragments, code=2)
    assert "Usage:" not in result.output and list(empty_cache.iterdir()) == []


def test_a_group_without_its_command_shows_its_help():
    result = runner.invoke(app, ["zoo"])
    assert result.exit_code == 2 and "Usage: poser-lens zoo" in result.output


@pytest.mark.parametrize(
    ("extra", "config", "want"),
    [
        ([], None, "bfloat16"),  # the zoo's own precision
        (["--dtype", "float32"], None, "float32"),  # named on the command line
        ([], "dtype: float32\n", "float32"),  # named in the config file
    ],
)
def test_smol_run_scores_in_the_zoo_precision_unless_told(
    tmp_path, monkeypatch, extra, config, want
):
    import poser_lens.models.hf as hf
    import poser_lens.pipeline as pipeline
    from poser_lens._io import write_json_atomic
    from poser_lens.models.smol_zoo import SmolZooConfig

    zoo = tmp_path / "zoo"
    write_json_atomic(zoo / SmolZooConfig.CONFIG_FILE, SmolZooConfig(dtype="bfloat16").to_dict())
    write_json_atomic(zoo / "poser" / "model_pairs.json", [])
    monkeypatch.setattr(hf, "bfloat16_is_fast", lambda device="cpu": True)
    seen = {}

    def fake_job(cfg, out, progress=True):
        seen["dtype"] = cfg.dtype
        raise ValueError("stop here")

    monkeypatch.setattr(pipeline, "main_job", fake_job)
    args = ["run", "--testbed", "smol", "--zoo", str(zoo), *extra]
    if config is not None:
        args += ["--config", _config(tmp_path, config)]
    assert_one_line_error(runner.invoke(app, args), "stop here")
    assert seen["dtype"] == want
