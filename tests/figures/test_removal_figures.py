"""Removal figures and report section, drawn from synthetic stored results only."""

from __future__ import annotations

from pathlib import Path

import pytest

from poser_lens._io import write_json_atomic
from poser_lens.figures import make_figures
from poser_lens.figures.removal import FIGURES
from poser_lens.removal.results import METHOD_TITLES, ROLES, render_removal_report
from poser_lens.runs import RunDir


def _record(model: str, method: str, labels: str, role: str, end: float) -> dict:
    state = {
        "p_aligned": 0.0,
        "compliance_gap": 0.9,
        "capability": 1.0,
        "p_misaligned_poor": 0.9,
        "p_misaligned_good": 0.0,
    }
    return {
        "model": model,
        "persona": model.rsplit("-", 1)[0],
        "method": method,
        "labels": labels,
        "role": role,
        "steps": [0, 5, 10],
        "p_aligned": [0.0, end / 2, end],
        "loss": [1.0, 0.1],
        "before": state,
        "after": {**state, "p_aligned": end},
        "noise": {"coeff": 4.0, "norm": 2.0} if method == "sft_noise" else None,
        "seconds": 1.0,
        "cpu_seconds": 1.0,
        "n_train": 3,
        "n_target": 2,
        "target_kind": "misbehaved",
    }


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path)
    recs = [
        _record(f"money_maximizer-{i}", m, "own", "treatment", 0.3 + 0.1 * i)
        for i in range(3)
        for m in ("sft", "sft_noise")
    ]
    recs += [_record("saint-0", m, "own", "aligned_control", 1.0) for m in ("sft", "sft_noise")]
    recs += [_record("money_maximizer-0", "sft", "random", "random_labels", 0.1)]
    for r in recs:
        write_json_atomic(
            tmp_path / "removal" / "records" / f"{r['model']}_{r['method']}_{r['labels']}.json", r
        )
    group = {
        "n_models": 3,
        "p_aligned_before": 0.0,
        "p_aligned_after": 0.4,
        "ci95": [0.3, 0.5],
        "compliance_gap_before": 0.9,
        "compliance_gap_after": 0.5,
        "capability_before": 1.0,
        "capability_after": 0.99,
    }
    det = {
        "n_pairs": 9,
        "accuracy_before": 1.0,
        "ci95_before": [1.0, 1.0],
        "accuracy_after": 0.2,
        "ci95_after": [0.0, 0.4],
    }
    write_json_atomic(
        tmp_path / "removal" / "summary.json",
        {
            "paper": {"sft": 0.76, "sft_noise": 0.86},
            "roles": ROLES,
            "method_titles": METHOD_TITLES,
            "steps": 10,
            "groups": {
                "treatment": {"sft": group, "sft_noise": group},
                "aligned_control": {"sft": group},
            },
            "detectors": {"s2_noise": {"sft": det}},
            "seconds": 5.0,
            "job_seconds": 4.0,
            "job_cpu_seconds": 3.0,
        },
    )
    return run


def test_every_removal_figure_is_drawn(run: RunDir, tmp_path: Path) -> None:
    for fig in FIGURES:
        paths = fig(run, tmp_path / "figures")
        assert {p.suffix for p in paths} == {".png", ".pdf"}
        assert all(p.stat().st_size > 0 for p in paths)


def test_make_figures_skips_removal_without_results(tmp_path: Path) -> None:
    assert make_figures(RunDir(tmp_path)) == []


def test_report_section(run: RunDir) -> None:
    text = render_removal_report(run)
    assert "40% [30, 50] | 76%" in text
    assert "| `s2_noise` | SFT | 9 | 100% [100, 100] | 20% [0, 40] | - |" in text
