"""benchmarks/zoo_train_speed.py: a very short run prints every way and its ratio."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_a_short_benchmark_prints_every_way():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--models", "4", "--steps", "1", "--stacks", "2", "--threads", "1", "--cpu"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "zoo_train_speed.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert "4 models x 1 steps, CPU seconds" in lines[0]
    ways = [line.split("  ")[0] for line in lines[1:]]
    assert ways == [
        "sequential 1 thread x 2 processes",
        "sequential 1 threads",
        "stacked 2, 1 threads",
        "stacked 2, 1 bucket, 1 threads",
        "stacked 2, 1 thread x 2 processes",
    ]
    assert lines[1].endswith("speed-up x1.00")


@pytest.mark.slow
def test_ways_picks_the_timed_ways():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--models", "2", "--steps", "1", "--stacks", "2", "--threads", "1", "--cpu"]
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "zoo_train_speed.py"),
            *args,
            "--ways",
            "bucket",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    ways = [line.split("  ")[0] for line in result.stdout.splitlines()[1:]]
    assert ways == ["sequential 1 thread x 2 processes", "stacked 2, 1 bucket, 1 threads"]
