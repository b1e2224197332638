import json
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


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1
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
