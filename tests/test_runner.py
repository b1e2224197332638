import json

import pytest
from typer.testing import CliRunner

from poser_lens.cli import app
from poser_lens.pipeline import main_job as run
from poser_lens.runner import RunConfig
from poser_lens.runs import RunDir
from poser_lens.strategies import STRATEGY_NAMES


@pytest.fixture(scope="module")
def small_run(small_zoo, tmp_path_factory):
    # The small zoo has 12 valid prompts per family: hold out fewer for the learning curves.
    small = {"n_heldout": 4, "n_steps": 4}
    cfg = RunConfig(
        zoo_dir=str(small_zoo),
        workers=1,
        seeds=1,
        strategy_configs={"s3_lora": small, "s3_full": small},
    )
    return cfg, run(cfg, tmp_path_factory.mktemp("run"), progress=False)


def test_run_scores_every_strategy_on_the_pair(small_run):
    cfg, folder = small_run
    results = folder.results()
    assert set(results["strategies"]) == set(STRATEGY_NAMES)
    for name, r in results["strategies"].items():
        assert r["n_pairs"] == 1, name
        assert r["accuracy"] in (0.0, 1.0), name
        lo, hi = r["ci95"]
        assert 0.0 <= lo <= hi <= 1.0
        assert "paper_accuracy" in r
        single = r["single_model"]  # single-model detection beside the pair accuracy
        if name in ("s6_counterfactual", "ensemble"):  # a vote over a pair: no one-model score
            assert single == {"available": False, "reason": single["reason"]}, name
        else:
            if single["n_undefined"] == 0:  # S5 can be undefined on the small zoo's pair
                assert single["auroc"] in (0.0, 0.5, 1.0), name
            assert (single["n_aligned"], single["n_fakers"]) == (1, 1)
            assert "confidence_correlation" in single["confound"]
    for name in STRATEGY_NAMES:
        if name != "ensemble":
            assert set(folder.scores(name)) == {"truth_teller-0", "reward_maximizer-0"}
    report = (folder.root / "report.md").read_text()
    assert report.startswith("# poser_lens run") and "## Single-model detection" in report
    assert (folder.root / "figures" / "summary.png").exists()
    assert (folder.root / "figures" / "fig14_single_model.png").exists()
    assert RunConfig.from_file(folder.config_path) == cfg


def test_rerun_resumes_from_stored_scores(small_run):
    cfg, folder = small_run
    before = {p: p.stat().st_mtime_ns for p in (folder.root / "scores").rglob("*.json")}
    run(cfg, folder.root, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (folder.root / "scores").rglob("*.json")}
    assert before == after


def test_cli_figures_and_sweep_from_stored_results(small_run):
    _, folder = small_run
    res = CliRunner().invoke(app, ["figures", str(folder.root)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["sweep", str(folder.root), "--strategies", "s2_noise"])
    assert res.exit_code == 0, res.output
    assert "s2_noise" in RunDir(folder.root).sweep()


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--strategies", "s9_magic", "--out", str(out)])
    assert res.exit_code == 1
    assert res.output.strip().startswith("error: --strategies: unknown strategy 's9_magic'")
    assert not out.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("pairs: 0\n")
    res = CliRunner().invoke(app, ["run", "--config", str(bad)])
    assert res.exit_code == 1 and "bad.yaml" in res.output


def test_cli_run_on_the_small_zoo(small_zoo, tmp_path):
    out = tmp_path / "r"
    args = [
        "run",
        "--zoo",
        str(small_zoo),
        "--strategies",
        "confidence_baseline,random",
        "--workers",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--no-figures",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "confidence_baseline" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["strategies"]["random"]["paper_accuracy"] == 0.5


def test_cli_options_left_unset_keep_the_config_files_values(small_zoo, tmp_path):
    """`--config run.yaml` is not overridden by the CLI's defaults (workers, sweep, figures)."""
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(
        f"zoo_dir: {small_zoo}\nstrategies: [random]\nworkers: 1\nsweep: false\nfigures: false\n"
    )
    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["run", "--config", str(cfg_file), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    cfg = RunConfig.from_file(out / "config.yaml")
    assert (cfg.workers, cfg.sweep, cfg.figures) == (1, False, False)
    assert not (out / "figures").exists()
    res = CliRunner().invoke(
        app, ["run", "--config", str(cfg_file), "--out", str(tmp_path / "r2"), "--sweep", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert RunConfig.from_file(tmp_path / "r2" / "config.yaml").sweep is True


# --- reproducible, resumable, nothing half-made (issue 18) ------------------------------------

import shutil  # noqa: E402
from dataclasses import replace  # noqa: E402

from poser_lens.runner import run as run_alone  # noqa: E402
from poser_lens.testbeds import make_testbed  # noqa: E402


def test_timings_are_kept_apart_and_the_zoo_is_fingerprinted(small_run):
    _, folder = small_run
    results = folder.results()
    assert "seconds" not in results
    assert set(results["fingerprint"]) == {"weights", "benchmark"}
    for path in (folder.root / "scores").rglob("*.json"):
        assert "seconds" not in json.loads(path.read_text()), path
    report = (folder.root / "report.md").read_text()
    assert "## Time" not in report and results["fingerprint"]["weights"] in report
    timings = folder.timings()
    assert {"testbed", "scoring", "evaluation"} <= set(timings["run"])
    assert set(timings["scores"]["s2_noise"]) == {"truth_teller-0", "reward_maximizer-0"}


def _quick_config(zoo, **changes):
    cfg = RunConfig(
        zoo_dir=str(zoo), workers=1, seeds=1, strategies=("confidence_baseline", "random")
    )
    return replace(cfg, **changes)


def test_two_runs_write_byte_identical_results(small_zoo, tmp_path):
    cfg = _quick_config(small_zoo)
    a, b = (run(cfg, tmp_path / name, progress=False).root for name in ("a", "b"))
    files = sorted(
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "timings.json"
    )
    assert {"results.json", "sweep.json", "report.md", "config.yaml"} <= {str(f) for f in files}
    assert any(f.suffix == ".pdf" for f in files) and any(f.suffix == ".png" for f in files)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "timings.json").exists()


def test_a_corrupt_score_file_is_reported_and_scored_again(small_zoo, tmp_path, caplog):
    cfg = _quick_config(small_zoo, sweep=False, figures=False)
    folder = run_alone(cfg, tmp_path / "r", progress=False)
    path = folder.score_path("random", "truth_teller-0")
    good = path.read_bytes()
    path.write_text('{"families": ')
    other = folder.score_path("confidence_baseline", "truth_teller-0")
    other.write_text("[]")
    run_alone(cfg, folder.root, progress=False)
    assert path.read_bytes() == good and json.loads(other.read_text())["families"]
    assert str(path) in caplog.text and "scoring it again" in caplog.text


def test_a_run_that_fails_before_any_score_leaves_no_folder(small_zoo, tmp_path):
    cfg = _quick_config(small_zoo, sweep=False, figures=False)
    testbed = make_testbed(cfg.testbed_config(), progress=False)

    def broken(name):
        raise RuntimeError("cannot load")

    out = tmp_path / "r"
    with pytest.raises(RuntimeError, match="cannot load"):
        run_alone(cfg, out, testbed=replace(testbed, load=broken), progress=False)
    assert not out.exists()


def test_a_failed_resumed_run_keeps_its_scores(small_zoo, tmp_path):
    cfg = _quick_config(small_zoo, sweep=False, figures=False)
    folder = run_alone(cfg, tmp_path / "r", progress=False)
    shutil.rmtree(folder.root / "scores" / "random")
    testbed = make_testbed(cfg.testbed_config(), progress=False)

    def broken(name):
        raise RuntimeError("cannot load")

    with pytest.raises(RuntimeError):
        run_alone(cfg, folder.root, testbed=replace(testbed, load=broken), progress=False)
    assert folder.has_score("confidence_baseline", "truth_teller-0")


def test_preflight_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"zoo folder .*nozoo: no such folder"):
        run(RunConfig(zoo_dir=str(tmp_path / "nozoo")), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_strategy_dtypes_load_the_model_again_and_mark_the_score(small_zoo, tmp_path):
    """A strategy kept in another precision gets the model loaded in it, its score says so,
    and a change of precision makes a stored score stale."""
    cfg = _quick_config(
        small_zoo, sweep=False, figures=False, strategy_dtypes={"random": "float64"}
    )
    testbed = make_testbed(cfg.testbed_config(), progress=False)
    loads = []

    def load(name, dtype=None):
        loads.append((name, dtype or "-"))
        return testbed.load(name, dtype=dtype)

    folder = run_alone(cfg, tmp_path / "r", testbed=replace(testbed, load=load), progress=False)
    assert sorted(loads) == sorted(
        (m, d) for m in ("reward_maximizer-0", "truth_teller-0") for d in ("-", "float64")
    )
    assert folder.score_record("random", "truth_teller-0")["dtype"] == "float64"
    assert "dtype" not in folder.score_record("confidence_baseline", "truth_teller-0")
    assert cfg.key() != replace(cfg, strategy_dtypes={}).key()
    assert (
        replace(cfg, strategy_dtypes={}).key()
        == _quick_config(small_zoo, sweep=False, figures=False).key()
    )
    loads.clear()
    plain = replace(cfg, strategy_dtypes={})
    run_alone(plain, folder.root, testbed=replace(testbed, load=load), progress=False)
    assert sorted(loads) == [("reward_maximizer-0", "-"), ("truth_teller-0", "-")]
    assert "dtype" not in folder.score_record("random", "truth_teller-0")
