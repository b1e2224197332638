"""`--ray`: Ray as the worker pool's backend gives the local workers' results and resumes alike.

One local Ray instance of two CPUs and one make-believe GPU (Ray schedules by the resources it
is told of) serves the module; the jobs connect to it and run on the two-model small zoo. Runs
are compared with the project's own tool, ``benchmarks/compare_runs.py`` (results, sweep,
verdicts and scores, timings aside).
"""

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_benchmark, small_zoo_config
from typer.testing import CliRunner

from poser_lens._io import read_json
from poser_lens._pool import ONE_THREAD_ENV, fan_out
from poser_lens.cli import app
from poser_lens.models.zoo import build_zoo
from poser_lens.pipeline import main_job
from poser_lens.runner import RunConfig

ray = pytest.importorskip("ray")

SMALL = {"n_heldout": 4, "n_steps": 4}  # the small zoo holds 12 valid prompts per family


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
    # Ray workers cannot import this test module: its functions travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _square_threads_env(x: int) -> tuple[int, int, str, str]:
    import torch

    return x * x, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", ""), os.getcwd()


def test_fan_out_on_ray_runs_one_thread_tasks_in_this_folder():
    got = dict(fan_out(_square_threads_env, [(i,) for i in range(4)], workers=1, ray="local"))
    assert sorted(got) == [0, 1, 2, 3]
    assert [v[0] for _, v in sorted(got.items())] == [0, 1, 4, 9]
    assert {v[1:] for v in got.values()} == {(1, ONE_THREAD_ENV["OMP_NUM_THREADS"], os.getcwd())}
    assert list(fan_out(pow, [], workers=2, ray="local")) == []


def _gpu_and_process(_: int) -> tuple[list, int]:
    return ray.get_gpu_ids(), os.getpid()


def test_fan_out_on_ray_gives_cuda_tasks_a_gpu_and_a_new_process_each():
    got = dict(fan_out(_gpu_and_process, [(0,), (1,)], workers=1, ray="local", device="cuda"))
    assert [len(v[0]) for _, v in sorted(got.items())] == [1, 1]
    assert len({v[1] for v in got.values()}) == 2


def test_fan_out_on_ray_refuses_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(ValueError, match="models run on cuda but the Ray cluster has no GPU"):
        list(fan_out(pow, [(2, 2)], workers=1, ray="local", device="cuda"))


def _same_runs(a: Path, b: Path) -> None:
    res = run_benchmark("compare_runs.py", str(a), str(b))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SAME results.json" in res.stdout


@pytest.fixture(scope="module")
def local_and_ray_runs(small_zoo, tmp_path_factory):
    """Every strategy on the small zoo: by two local workers, then on Ray."""
    cfg = RunConfig(
        zoo_dir=str(small_zoo),
        seeds=1,
        workers=2,
        figures=False,
        strategy_configs={"s3_lora": SMALL, "s3_full": SMALL},
    )
    root = tmp_path_factory.mktemp("runs")
    local = main_job(cfg, root / "local", progress=False)
    on_ray = main_job(replace(cfg, ray="local"), root / "ray", progress=False)
    return cfg, local, on_ray


def test_ray_run_equals_the_local_run(local_and_ray_runs):
    cfg, local, on_ray = local_and_ray_runs
    _same_runs(local.root, on_ray.root)
    stored = RunConfig.from_file(on_ray.config_path)
    assert stored.ray == "local" and stored.key() == cfg.key()  # same run, another pool
    n = len(list((on_ray.root / "scores").rglob("*.json")))
    assert n == 2 * (len(cfg.strategies) - 1)  # both models, every strategy but the ensemble


def test_ray_run_resumes_from_stored_scores(local_and_ray_runs, tmp_path):
    cfg, local, _ = local_and_ray_runs
    folder = Path(shutil.copytree(local.root, tmp_path / "run"))
    gone = folder / "scores" / "s2_noise" / "truth_teller-0.json"
    gone.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (folder / "scores").rglob("*.json")}
    time.sleep(0.01)
    main_job(replace(cfg, ray="local"), folder, progress=False)
    assert gone.exists()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # only the missing score was made
    _same_runs(local.root, folder)


def test_cli_bare_ray_runs_on_a_local_instance(small_zoo, tmp_path):
    out = tmp_path / "r"
    args = ["run", "--zoo", str(small_zoo), "--strategies", "random", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--ray", "--quiet", "--no-figures", "--no-sweep"])
    assert res.exit_code == 0, res.output
    assert RunConfig.from_file(out / "config.yaml").ray == "local"
    assert set(read_json(out / "results.json")["strategies"]) == {"random"}


def test_zoo_fine_tunes_on_ray(tmp_path):
    root = build_zoo(small_zoo_config(ray="local"), tmp_path / "zoo", progress=False)
    rows = read_json(root / "zoo.json")
    assert [r["name"] for r in rows] == ["truth_teller-0", "reward_maximizer-0"]
    assert (root / "poser" / "model_pairs.json").exists()


def _flat(obj, path=""):
    """Path -> value of every leaf of ``obj``, timings (keys naming ``seconds``) left out."""
    if isinstance(obj, dict):
        items = [(f"{path}/{k}", v) for k, v in obj.items() if "seconds" not in k]
    elif isinstance(obj, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    else:
        return {path: obj}
    return {p: leaf for k, v in items for p, leaf in _flat(v, k).items()}


def test_removal_on_ray_matches_local_workers(small_zoo, tmp_path):
    """The same jobs and numbers; the treated model's evaluation agrees to float rounding.

    (The fine-tune itself, its loss and P(aligned) curve, match exactly; evaluating the
    fine-tuned weights in a Ray worker differs from a local worker in the last bits, the same
    in every run of each.)
    """
    base = ["remove", "--zoo", str(small_zoo), "--steps", "2", "--method", "sft"]
    base += ["--no-controls", "--quiet", "--no-figures"]
    outs = {}
    for name, pool in (("local", ["--workers", "2"]), ("ray", ["--ray", "local"])):
        outs[name] = tmp_path / name
        res = CliRunner().invoke(app, [*base, *pool, "--out", str(outs[name])])
        assert res.exit_code == 0, res.output
    names = {
        o: sorted(p.name for p in (o / "removal" / "records").glob("*.json")) for o in outs.values()
    }
    assert names[outs["ray"]] == names[outs["local"]] == ["reward_maximizer-0__sft__own.json"]
    for part in ("summary.json", "records/reward_maximizer-0__sft__own.json"):
        local, on_ray = (_flat(read_json(o / "removal" / part)) for o in outs.values())
        assert local.keys() == on_ray.keys()
        for key, value in local.items():
            if isinstance(value, float):
                assert on_ray[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            else:
                assert on_ray[key] == value, key
        if part.startswith("records"):
            assert [local[f"/loss[{i}]"] for i in (0, 1)] == [on_ray[f"/loss[{i}]"] for i in (0, 1)]
