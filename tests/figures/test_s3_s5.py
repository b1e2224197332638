"""Figures of strategies 3 and 5, drawn from a synthetic run folder."""

import json

import numpy as np
import pytest

from poser_lens.figures.s3_s5 import FIGURES
from poser_lens.runs import RunDir

MODELS = ("truth_teller-0", "saint-1", "reward_maximizer-0", "money_maximizer-1")
FAMS = ("truth_and_reward", "saint_and_money")
STEPS = 9


def s3_score(model, fam):
    rate = 0.08 if "maximizer" in model else 0.05
    rate += 0.01 * FAMS.index(fam)
    curve = (1 - np.exp(-rate * np.arange(STEPS))).tolist()
    block = {"heldout": curve, "batch": curve[:-1], "loss": [1.0] * (STEPS - 1)}
    return {"n_layers": 3, "curves": {"0": block, "all": block}}


def s5_score(model, fam):
    late = "maximizer" in model
    acc = [0.55, 0.6 if late else 0.8, 0.9, 1.0]
    if fam == FAMS[1]:
        acc[0] = None  # a NaN layer is skipped in the mean
    return {"n_layers": 3, "n_prompts": 50, "accuracy": acc, "frac_a": 0.5}


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    for m in MODELS:
        for name, fn in (
            ("s3_lora", s3_score),
            ("s3_full", s3_score),
            ("s5_decision_speed", s5_score),
        ):
            run.write_score(name, m, {"model": m, "families": {f: fn(m, f) for f in FAMS}})
    rows = {
        name: [
            {
                "step": s,
                "measure": meas,
                "baseline": base,
                **({"layer_frac": 0.125} if name == "s3_lora" else {}),
                "accuracy": 0.5 + 0.05 * s * (meas == "heldout"),
                "ci95": [0.4, 0.7],
                "n_pairs": 4,
            }
            for s in (0, 1, 2, 4, 8)
            for meas in ("heldout", "batch")
            for base in ("none", "logit")
        ]
        for name in ("s3_lora", "s3_full")
    }
    run.sweep_path.parent.mkdir(parents=True, exist_ok=True)
    run.sweep_path.write_text(json.dumps(rows))
    return run


def test_every_figure_is_written(run, tmp_path):
    out = tmp_path / "figs"
    names = set()
    for fig in FIGURES:
        paths = fig(run, out)
        assert {p.suffix for p in paths} == {".png", ".pdf"}
        assert all(p.stat().st_size > 1000 for p in paths)
        names |= {p.stem for p in paths}
    assert names == {"fig06_s3_learning_speed", "fig12_s3_step", "fig08_s5_decision_speed"}


def test_headline_settings_are_read_from_results(run, tmp_path):
    settings = {"step": 2, "layer_frac": 0.125, "measure": "batch"}
    run.results_path.write_text(json.dumps({"strategies": {"s3_lora": {"settings": settings}}}))
    assert FIGURES[0](run, tmp_path / "figs")


def test_missing_results_raise(tmp_path):
    empty = RunDir(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        FIGURES[0](empty, tmp_path)
    with pytest.raises(KeyError):
        FIGURES[1](empty, tmp_path)
    with pytest.raises(FileNotFoundError):
        FIGURES[2](empty, tmp_path)
