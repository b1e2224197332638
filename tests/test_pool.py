"""The one worker pool: in-process and spawned workers give the same results."""

import os
import sys

import pytest

from poser_lens._pool import ONE_THREAD_ENV, fan_out, process_memo


def _threads_and_square(x: int) -> tuple[int, int, str]:
    import torch

    return x * x, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", "")


def test_fan_out_in_process_keeps_order():
    assert list(fan_out(pow, [(2, 2), (3, 2), (4, 2)], workers=1)) == [(0, 4), (1, 9), (2, 16)]


def test_fan_out_workers_run_one_thread_each():
    got = dict(fan_out(_threads_and_square, [(i,) for i in range(4)], workers=2))
    assert sorted(got) == [0, 1, 2, 3]
    assert [v[0] for _, v in sorted(got.items())] == [0, 1, 4, 9]
    assert all(v[1] == 1 and v[2] == ONE_THREAD_ENV["OMP_NUM_THREADS"] for v in got.values())


def test_process_memo_rebuilds_only_for_a_new_key():
    built = []

    def build(value):
        built.append(value)
        return value

    assert process_memo("test", "a", lambda: build(1)) == 1
    assert process_memo("test", "a", lambda: build(2)) == 1
    assert process_memo("test", "b", lambda: build(3)) == 3
    assert process_memo("other", "a", lambda: build(4)) == 4
    assert built == [1, 3, 4]


def test_fan_out_on_ray_without_ray_installed_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as without the extra
    with pytest.raises(ValueError, match=r"^--ray local: Ray is not installed \(pip install"):
        list(fan_out(pow, [(2, 2)], workers=1, ray="local"))
