"""benchmarks/profile_run.py: a short profile runs end to end and reports every phase."""

import json

import pytest
import yaml
from conftest import run_benchmark

from poser_lens.strategies import STRATEGY_NAMES

#: A zoo that builds in seconds, with enough valid prompts for every strategy's defaults.
QUICK_ZOO = {
    "generator": {"n_per_family": 40, "n_benchmark_per_family": 40, "n_error": 30},
    "model": {"n_layers": 2, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64},
    "base": {"steps": 4, "lr": 0.003, "batch_size": 16},
    "finetune": {"steps": 3, "lr": 0.001, "batch_size": 16},
    "train_size": 64,
    "threshold": 0.0,
    "recipe": "hard",
}


@pytest.mark.slow
def test_short_profile_reports_every_phase(tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(QUICK_ZOO))
    out = tmp_path / "profile.json"
    args = ["--seeds", "1", "--personas", "truth_teller,reward_maximizer", "--workers", "1"]
    args += ["--zoo-config", str(zoo), "--cache", str(tmp_path / "cache")]
    args += ["--out", str(tmp_path / "work"), "--json", str(out), "--quiet"]
    result = run_benchmark("profile_run.py", *args, "--rate-seconds", "0.05", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    profile = json.loads(out.read_text())
    names = [p["phase"] for p in profile["phases"]]
    assert names[:5] == ["data", "base", "fine-tunes", "benchmark filter", "testbed"]
    assert names[-3:] == ["evaluation", "figures", "report"]
    assert sorted(n.removeprefix("scoring: ") for n in names[5:-3]) == sorted(STRATEGY_NAMES)
    assert all(p["wall_s"] >= 0 and p["cpu_s"] >= 0 for p in profile["phases"])
    flops = {p["phase"]: p for p in profile["phases"] if p["flops"]}
    assert {"base", "fine-tunes", "scoring: s2_noise", "scoring: s3_full"} <= set(flops)
    for p in flops.values():
        assert p["matmul_flops_per_s_one_thread"] > 0 and p["fraction_of_matmul_rate"] > 0
    checks = [p["check"] for p in profile["phases"] if p["check"]]
    assert len(checks) >= 10
    for c in checks:
        assert abs(c["analytic"] / c["flop_counter"] - 1) <= 0.10, c
    assert "| base |" in result.stdout and "Furthest from the matmul rate" in result.stdout
