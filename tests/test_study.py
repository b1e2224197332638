import json

import pytest
from conftest import small_zoo_config
from typer.testing import CliRunner

from poser_lens import study
from poser_lens.cli import app
from poser_lens.pipeline import study_job
from poser_lens.study import StudyConfig, parse_recipes, render_study, summarise, zoo_config


def test_zoo_i_varies_the_scenario_and_base_seeds():
    a, b = zoo_config("matched", 0), zoo_config("matched", 1)
    assert (a.generator.seed, a.base_seed) == (0, 0)
    assert (b.generator.seed, b.base_seed) == (1, 1)
    assert a.key() != b.key() != zoo_config("hard", 1).key()
    assert zoo_config("matched", 0).key() == type(a)().key()  # zoo 0 is the default zoo
    with pytest.raises(ValueError, match="unknown zoo recipe"):
        zoo_config("shallow", 0)


def test_recipes_option_and_plan():
    assert parse_recipes("matched,hard:1") == (("matched", None, None), ("hard", 1, None))
    cfg = StudyConfig(zoos=2, recipes=parse_recipes("matched,deep:1:3"))
    assert cfg.plan() == [("matched", 0, 6), ("matched", 1, 6), ("deep", 0, 3)]
    with pytest.raises(ValueError, match="bad count"):
        parse_recipes("hard:x")
    with pytest.raises(ValueError, match="unknown zoo recipe"):
        StudyConfig(recipes=(("soft", None, None),))


def _results(acc, matched):
    ctl = {
        "matched": {"available": True, "accuracy": matched, "ci95": [0, 1]},
        "adversarial": {"accuracy": 0.5, "ci95": [0, 1]},
        "residual": {"accuracy": 0.5, "ci95": [0, 1]},
    }
    return {
        "strategies": {
            "s2_noise": {
                "accuracy": acc,
                "ci95": [0, 1],
                "confound": ctl,
                "single_model": {"available": True, "auroc": acc + 0.05, "ci95": [0, 1]},
            }
        },
        "confidence": {"mean_p": {"accuracy": 0.5, "ci95": [0.3, 0.7]}},
    }


def test_summary_is_the_spread_over_zoos():
    out = summarise({"matched-0": _results(0.9, 0.8), "matched-1": _results(0.7, 0.6)})
    s = out["recipes"]["matched"]["strategies"]["s2_noise"]
    assert s["accuracy"] == [0.9, 0.7]
    assert s["mean"] == pytest.approx(0.8) and (s["min"], s["max"]) == (0.7, 0.9)
    assert s["matched_mean"] == pytest.approx(0.7)
    text = render_study(out)
    assert "| `s2_noise` | 90% / 70% | 80% [70%, 90%]" in text
    assert s["auroc"] == pytest.approx([0.95, 0.75]) and s["auroc_mean"] == pytest.approx(0.85)
    assert "| 0.85 [0.75, 0.95] |" in text


def test_study_runs_every_zoo_and_writes_its_folder(tmp_path, monkeypatch):
    small = small_zoo_config(personas=("truth_teller", "reward_maximizer"))
    monkeypatch.setitem(study.RECIPE_CONFIGS, "hard", small)
    cfg = StudyConfig(
        zoos=2,
        recipes=(("hard", None, None),),
        seeds=1,
        strategies=("random", "confidence_baseline"),
        workers=1,
    )
    root = study_job(cfg, tmp_path / "study", progress=False)
    data = json.loads((root / "study.json").read_text())
    entry = data["recipes"]["hard"]
    assert entry["zoos"] == ["hard-0", "hard-1"]
    assert len(entry["strategies"]["random"]["accuracy"]) == 2
    assert (root / "hard-1" / "results.json").exists()
    assert (root / "figures" / "study.png").exists() and (root / "study.md").exists()
    res = CliRunner().invoke(app, ["figures", str(root)])
    assert res.exit_code == 0, res.output


def test_cli_study_bad_recipe_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["study", "--recipes", "wide:2", "--out", str(tmp_path / "s")])
    assert res.exit_code == 1
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
