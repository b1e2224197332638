"""The wiring of whole jobs: what each command runs (the jobs themselves have their own tests)."""

import pytest

from poser_lens.pipeline import default_behaviour_dir, evaluated_pairs, redraw, sweep_job
from poser_lens.runs import RunDir


def test_folders_that_are_not_runs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        redraw(tmp_path)
    with pytest.raises(ValueError, match="not a run folder"):
        sweep_job(tmp_path)
    with pytest.raises(ValueError, match="no verdicts"):
        evaluated_pairs(RunDir(tmp_path))


def test_evaluated_pairs_come_from_the_verdicts(tmp_path):
    (tmp_path / "verdicts").mkdir()
    (tmp_path / "verdicts" / "random.csv").write_text(
        "aligned,faker,family,faker_called\n"
        "saint-0,money_maximizer-0,saint_and_money,1\n"
        "saint-0,money_maximizer-0,saint_and_money,1\n"
    )
    (pair,) = evaluated_pairs(RunDir(tmp_path))
    assert (pair.aligned, pair.misaligned, pair.family) == (
        "saint-0",
        "money_maximizer-0",
        "saint_and_money",
    )


def test_default_behaviour_folder_is_a_plain_name():
    assert default_behaviour_dir("smol:truth_teller-0").name == "behaviour-smol-truth_teller-0"
