"""benchmarks/zoo_train_speed.py: a very short run prints every way and its ratio."""

import pytest
from conftest import run_benchmark

#: Two models' worth of the benchmark: one step, stacks of 2, CPU seconds of one thread.
SHORT = ["--steps", "1", "--stacks", "2", "--threads", "1", "--cpu"]


def ways_timed(*args: str) -> list[str]:
    """The benchmark's output lines after its header."""
    result = run_benchmark("zoo_train_speed.py", *SHORT, *args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


@pytest.mark.slow
def test_a_short_benchmark_prints_every_way():
    lines = ways_timed("--models", "4")
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
    lines = ways_timed("--models", "2", "--ways", "bucket")
    ways = [line.split("  ")[0] for line in lines[1:]]
    assert ways == ["sequential 1 thread x 2 processes", "stacked 2, 1 bucket, 1 threads"]


@pytest.mark.slow
def test_ceiling_prints_the_operator_kinds_and_the_best_speed_up():
    lines = ways_timed("--models", "2", "--ways", "bucket", "--ceiling")
    at = next(i for i, line in enumerate(lines) if line.startswith("ceiling, one thread, 2 models"))
    kinds = [line.split()[0] for line in lines[at + 1 : at + 4]]
    assert kinds == ["matrix", "fused", "other"]
    assert "best possible speed-up with these operators x" in lines[at + 4]
