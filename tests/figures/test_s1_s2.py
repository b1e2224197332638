"""Figures of strategies 1 and 2, drawn from a synthetic run folder."""

import numpy as np
import pytest

from poser_lens.figures.s1_s2 import FIGURES
from poser_lens.runs import RunDir

MODELS = ("truth_teller-0", "saint-1", "reward_maximizer-0", "money_maximizer-1")
COEFFS = [0.0, 1.0, 2.0, 4.0]


def curve(faker, scale):
    x = np.asarray(COEFFS)
    return [(0.01 + (0.1 if faker else 0.02) * scale * x).tolist()]


def score(model, variants):
    faker = "maximizer" in model
    mass = [(1 - 0.1 * np.asarray(COEFFS) ** 1.5).clip(0).tolist()]
    block = {
        v: {"p_misaligned": curve(faker, i + 1), "mass_ab": mass} for i, v in enumerate(variants)
    }
    return {
        "n_layers": 3,
        "coeffs": COEFFS,
        "kinds": list(variants),
        "signs": list(variants),
        "layers": {"0": block, "1": block, "2": block},
    }


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    for m in MODELS:
        for name, variants in (
            ("s1_belief", ("add", "subtract")),
            ("s2_noise", ("uniform", "gaussian")),
        ):
            fams = {f: score(m, variants) for f in ("truth_and_reward", "saint_and_money")}
            run.write_score(name, m, {"model": m, "families": fams})
    rows = [
        {
            "layer_frac": f,
            "kind": k,
            "coeff": c,
            "accuracy": 0.5 + f / 2,
            "ci95": [0, 1],
            "n_pairs": 4,
        }
        for f in (0.125, 0.375, 0.625)
        for k in ("uniform", "gaussian")
        for c in [*COEFFS[1:], "auto"]
    ]
    run.sweep_path.parent.mkdir(parents=True, exist_ok=True)
    run.sweep_path.write_text(__import__("json").dumps({"s2_noise": rows}))
    return run


def test_every_figure_is_written(run, tmp_path):
    out = tmp_path / "figs"
    names = set()
    for fig in FIGURES:
        paths = fig(run, out)
        assert {p.suffix for p in paths} == {".png", ".pdf"}
        assert all(p.stat().st_size > 1000 for p in paths)
        names |= {p.stem for p in paths}
    assert names == {"fig04_s1_belief", "fig05_s2_noise", "fig11_s2_mass", "sens_s2_noise"}


def test_missing_scores_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        FIGURES[0](RunDir(tmp_path / "empty"), tmp_path)
