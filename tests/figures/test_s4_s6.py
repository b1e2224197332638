import json

import numpy as np
import pytest

from poser_lens.figures.s4_s6 import FIGURES, fig07_s4_concepts, fig09_s6_saliency, s6_attention
from poser_lens.runs import RunDir

MODELS = ["truth_teller-0", "saint-1", "money_maximizer-0", "reward_maximizer-2"]


@pytest.fixture
def run(tmp_path):
    """A synthetic run folder with stored S4 sweep rows and S6 scores."""
    run = RunDir(tmp_path / "run")
    rng = np.random.default_rng(0)
    for m in MODELS:
        faker = "maximizer" in m
        tokens = ["<bos>", "<<prompt>>", "Facts", ":", "\n", "1", ".", "Nobody", "checks", "."]
        tokens += ["\n", "Answer", ":", "\n", "<</prompt>>"]
        example = {
            "tokens": tokens,
            "saliency": rng.uniform(0, 1, len(tokens)).tolist(),
            "critical": [7 <= i <= 9 for i in range(len(tokens))],
            "fact": [7 <= i <= 9 for i in range(len(tokens))],
        }
        fams = {"truth_and_money": {"log_ratio": 0.5 + faker, "example": example, "n_prompts": 3}}
        run.write_score("s6_saliency", m, {"families": fams})
        att = {"log_ratio": list(rng.normal(float(faker), 0.2, 3)), "n_layers": 3}
        run.write_score("s6_attention", m, {"families": {"truth_and_money": att}})
    rows = [
        {"concept": c, "layer_frac": f, "accuracy": a, "ci95": [a - 0.05, a + 0.05], "n_pairs": 324}
        for c, a in [("security", 0.6), ("competence", 0.55), ("behavior", 0.8), ("combined", 0.7)]
        for f in (0.25, 0.5)
    ]
    run.sweep_path.parent.mkdir(parents=True, exist_ok=True)
    run.sweep_path.write_text(json.dumps({"s4_concepts": rows}))
    return run


@pytest.mark.parametrize("fig", FIGURES)
def test_each_figure_writes_png_and_pdf(fig, run, tmp_path):
    paths = fig(run, tmp_path / "figs")
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_missing_results_raise_so_the_figure_is_skipped(tmp_path):
    empty = RunDir(tmp_path / "empty")
    with pytest.raises(KeyError):
        fig07_s4_concepts(empty, tmp_path)
    for fig in (fig09_s6_saliency, s6_attention):
        with pytest.raises(FileNotFoundError):
            fig(empty, tmp_path)
