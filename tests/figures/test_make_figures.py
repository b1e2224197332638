"""make_figures: skips figures whose results were not made, never a broken one silently."""

import json
import logging

from poser_lens.figures import make_figures
from poser_lens.runs import RunDir


def test_results_missing_a_key_are_reported_not_swallowed(tmp_path, caplog):
    (tmp_path / "results.json").write_text(json.dumps({"strategies": {"random": {}}}))
    with caplog.at_level(logging.WARNING):
        make_figures(RunDir(tmp_path))
    assert "fig_summary not drawn" in caplog.text and "'accuracy'" in caplog.text


def test_figures_of_strategies_not_run_are_skipped_quietly(tmp_path, caplog):
    row = {"accuracy": 0.5, "ci95": [0.4, 0.6], "n_pairs": 4, "paper_accuracy": 0.5}
    (tmp_path / "results.json").write_text(json.dumps({"strategies": {"random": row}}))
    with caplog.at_level(logging.WARNING):
        written = make_figures(RunDir(tmp_path))
    assert {p.name for p in written} >= {"summary.png", "summary.pdf"}
    assert caplog.text == ""
