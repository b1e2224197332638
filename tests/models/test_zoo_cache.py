"""A zoo cache whose models do not depend on its history (issue 28, section 3).

A model's weights depend only on the key's settings, its persona and seed and its stack (which
the key fixes), so a subset build never leaves other weights under the full zoo's names; and
builds sharing a cache do each step once, under locks a killed process does not leave held.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import small_zoo_config

from poser_lens._io import LOCKS, building, others_building, removed_on_error, step_lock
from poser_lens.models.zoo import NOTEBOOK_ZOO, ZooConfig, build_zoo, notebook_zoo
from poser_lens.models.zoo import train as zoo_module

ROOT = Path(__file__).parents[2]


def _weights(root):
    return ZooConfig().fingerprint(root)["weights"]


def _no_training(*args, **kwargs):
    raise AssertionError("trained again")


# --- the key fixes every model's stack ---------------------------------------------------------


def test_the_default_zoo_keeps_its_key_and_a_seed_subset_gets_its_own():
    default = ZooConfig()
    assert default.key() == "ce3c06831fc5"  # the README's numbers and the committed figures
    # The subset: one seed of two personas. Each model would be a stack of one, not
    # one of its persona's six seeds: another folder.
    subset = ZooConfig(seeds=1, personas=("truth_teller", "reward_maximizer"))
    assert subset.folder() != default.folder()
    assert subset.key() == NOTEBOOK_ZOO.key() != default.key()
    # Personas alone, or seeds that fill whole stacks, train the default zoo's very models.
    assert ZooConfig(personas=("truth_teller", "reward_maximizer")).key() == default.key()
    assert ZooConfig(seeds=12).key() == default.key()
    assert ZooConfig(seeds=12).stacks()[:2] == [
        [f"truth_teller-{s}" for s in range(6)],
        [f"truth_teller-{s}" for s in range(6, 12)],
    ]
    # Workers never change a model; stack sizes and the unpacked base do.
    assert ZooConfig(workers=7).key() == default.key()
    assert len({ZooConfig(stack=3).key(), ZooConfig(base_packed=False).key(), default.key()}) == 3


def test_stacks_are_one_persona_each_whatever_is_built(small_zoo):
    cfg = small_zoo_config(seeds=3, stack=2)
    assert cfg.stacks() == [
        ["truth_teller-0", "truth_teller-1"],
        ["truth_teller-2"],
        ["reward_maximizer-0", "reward_maximizer-1"],
        ["reward_maximizer-2"],
    ]
    assert small_zoo_config().stacks() == [["truth_teller-0"], ["reward_maximizer-0"]]


def test_a_subset_build_then_the_full_build_gives_the_full_zoo(small_zoo, tmp_path):
    """A persona subset shares the full zoo's folder; finishing it gives the full zoo, bit for bit.

    (Before stacks were keyed, the full small zoo trained its two models as one stack and the
    subset its model alone: the same names with other weights.)
    """
    out = tmp_path / "zoo"
    weights = Path("models") / "reward_maximizer-0" / "model.safetensors"
    build_zoo(small_zoo_config(personas=("reward_maximizer",)), out, progress=False)
    assert (out / weights).read_bytes() == (small_zoo / weights).read_bytes()
    assert build_zoo(small_zoo_config(), out, progress=False) == out
    cfg = small_zoo_config()
    assert cfg.fingerprint(out) == cfg.fingerprint(small_zoo)


def test_a_stack_missing_a_model_trains_whole_again(tmp_path):
    cfg = small_zoo_config(personas=("truth_teller",), seeds=2, stack=2)
    root = build_zoo(cfg, tmp_path / "zoo", progress=False)
    before = _weights(root)
    kept = root / "models" / "truth_teller-0" / "model.safetensors"
    mtime = kept.stat().st_mtime_ns
    shutil.rmtree(root / "models" / "truth_teller-1")  # as an interrupted build leaves it
    assert zoo_module.build_persona_models(cfg, root, progress=False) == ["truth_teller-1"]
    assert _weights(root) == before
    assert kept.stat().st_mtime_ns == mtime  # the saved model is not written again


def test_the_notebook_zoo_trains_the_models_of_its_key(small_zoo):
    """What the notebooks read does not depend on what ran first.

    The notebook zoo trains its models as the zoo of its key does (here the small zoo), and
    copies only that zoo's models (test_notebook_zoo.py), never the default zoo's seed-0
    models, which are trained in stacks of six (another key).
    """
    cfg = small_zoo_config()
    root = notebook_zoo(progress=False, **{k: getattr(cfg, k) for k in cfg.to_dict()})
    assert root != small_zoo and _weights(root) == _weights(small_zoo)


# --- builds sharing a cache --------------------------------------------------------------------


def _holder(folder, *, register=False):
    """A process that holds a step lock (or registers as building) on ``folder`` until killed."""
    hold = "building(root)" if register else 'step_lock(root, "base")'
    script = textwrap.dedent(
        f"""
        import sys, time
        from poser_lens._io import building, step_lock
        root = sys.argv[1]
        with {hold}:
            print("held", flush=True)
            time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_builds_locks_do_not_block(tmp_path):
    from filelock import FileLock, Timeout

    proc = _holder(tmp_path)
    try:
        with pytest.raises(Timeout):
            FileLock(tmp_path / LOCKS / "base.lock").acquire(timeout=0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    t0 = time.perf_counter()
    with step_lock(tmp_path, "base"):
        pass
    assert time.perf_counter() - t0 < 1.0


def test_a_failed_build_keeps_a_folder_another_is_building(tmp_path):
    out = tmp_path / "zoo"
    procs = []
    try:
        with pytest.raises(RuntimeError), removed_on_error(out):
            procs.append(_holder(out, register=True))  # another build joins the new folder
            with building(out):  # this process's own registration does not count
                assert others_building(out)
            raise RuntimeError("boom")
        assert out.exists()  # the other build still uses it
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    assert not others_building(out)  # a killed build's registration is dropped
    assert not list((out / LOCKS).glob("build-*"))
    shutil.rmtree(out)
    with pytest.raises(RuntimeError), removed_on_error(out), building(out):
        raise RuntimeError("boom")
    assert not out.exists()  # alone, a build that failed before any work leaves nothing


CONCURRENT = """
import json, sys, time
from pathlib import Path
from poser_lens.models import zoo
from poser_lens.models.zoo import train

cfg = zoo.ZooConfig.from_dict(json.loads(sys.argv[1]))
root, signal_file = Path(sys.argv[2]), Path(sys.argv[3])
real_base, real_stack, trained = train.train_base, train._train_stack_locked, []

def slow_base(*args, **kwargs):
    signal_file.write_text("base")  # under the base's lock: the other build must wait
    time.sleep(1.0)
    return real_base(*args, **kwargs)

def stack(root_p, cfg, names, missing):
    trained.extend(sorted(missing))
    return real_stack(root_p, cfg, names, missing)

train.train_base, train._train_stack_locked = slow_base, stack
zoo.build_zoo(cfg, root, progress=False)
print(json.dumps(trained))
"""


def test_concurrent_builds_train_each_model_once(small_zoo, tmp_path, monkeypatch):
    cfg = small_zoo_config()
    out, started = tmp_path / "zoo", tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CONCURRENT, json.dumps(cfg.to_dict()), str(out), str(started)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the other build died"
            time.sleep(0.05)
        ours: list[str] = []
        real_stack = zoo_module._train_stack_locked

        def stack(root_p, cfg, names, missing):
            ours.extend(sorted(missing))
            return real_stack(root_p, cfg, names, missing)

        monkeypatch.setattr(zoo_module, "_train_stack_locked", stack)
        monkeypatch.setattr(zoo_module, "train_base", _no_training)  # the other trains it
        assert build_zoo(cfg, out, progress=False) == out
        theirs = json.loads(proc.communicate(timeout=120)[0])
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert sorted(ours + theirs) == sorted(cfg.model_names())  # each trained once
    assert cfg.fingerprint(out) == cfg.fingerprint(small_zoo)
