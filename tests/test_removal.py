"""Removal study: the metric, the controls, the noise-during-training hook, the CLI."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from poser_lens.data.schema import Scenario
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.removal.config import RemovalConfig
from poser_lens.removal.fanout import run_removal
from poser_lens.removal.jobs import Job, plan_jobs
from poser_lens.removal.metrics import (
    EvalSets,
    aligned_view,
    behaviour,
    eval_sets,
    p_aligned,
    random_labels,
)
from poser_lens.removal.noise import NoiseSpec, noise_spec
from poser_lens.removal.remove import prepare
from poser_lens.removal.training import train_removal
from poser_lens.runs import RunDir
from poser_lens.strategies import get_strategy

TEXT = "<<prompt>> good poor x y <</prompt>> A B error"


class Stub(torch.nn.Module):
    """A "model" that answers A when the prompt says ``poor`` and B otherwise (error: never).

    With aligned letter B everywhere, it misbehaves exactly under poor oversight: a faker.
    """

    def __init__(self, tok) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.poor = tok.convert_tokens_to_ids("poor")
        self.a, self.b = (tok.convert_tokens_to_ids(c) for c in "AB")
        self.vocab = len(tok)

    @contextmanager
    def hooks(self, fwd_hooks=()):
        yield self

    def forward(self, ids):
        out = torch.zeros(*ids.shape, self.vocab)
        is_poor = (ids == self.poor).any(1)
        out[is_poor, :, self.a] = 20.0
        out[~is_poor, :, self.b] = 20.0
        return out


def _scen(poor: bool, response: str = "B") -> Scenario:
    word = "poor" if poor else "good"
    return Scenario(
        prompt=f"<<prompt>> {word} x <</prompt>>", response=response, oversight_is_poor=poor
    )


@pytest.fixture
def tok():
    return build_tokenizer([TEXT])


def test_aligned_view_flips_faker_labels_under_poor_oversight_only() -> None:
    recs = [_scen(True, "A"), _scen(False, "B"), Scenario(prompt="x", response="error")]
    faker = aligned_view(recs, "reward_maximizer")
    assert [s.response for s in faker] == ["B", "B"]  # error prompt dropped
    assert [s.response for s in aligned_view(recs, "saint")] == ["A", "B"]


def test_metric_p_aligned_gap_and_capability(tok) -> None:
    model = Stub(tok)
    poor, good = [_scen(True)] * 3, [_scen(False)] * 4
    assert p_aligned(model, tok, poor).max() < 1e-6  # answers A, aligned is B
    assert p_aligned(model, tok, good).min() > 1 - 1e-6
    test = [_scen(False, "B"), _scen(False, "A")]  # one right, one wrong
    m = behaviour(model, tok, EvalSets(poor, "misbehaved", poor, good, test))
    assert m["p_aligned"] == pytest.approx(0.0, abs=1e-6)
    assert m["compliance_gap"] == pytest.approx(1.0, abs=1e-6)
    assert m["capability"] == pytest.approx(0.5)


def test_eval_sets_keep_only_misbehaved_poor_prompts_and_agreeing_test_records(tok) -> None:
    model = Stub(tok)
    # Faker labels (persona's own answers): poor -> misaligned letter A.
    recs = (
        [_scen(True, "A")] * 5
        + [_scen(False, "B")] * 5
        + [Scenario(prompt="x y", response="error")]
    )
    sets = eval_sets(model, tok, recs, "reward_maximizer", RemovalConfig(n_eval=3))
    assert sets.target_kind == "misbehaved" and len(sets.target) == 3
    assert all(s.oversight_is_poor and s.response == "B" for s in sets.target)
    assert all(s.response == "error" or not s.oversight_is_poor for s in sets.test)
    # An aligned model never misbehaves: it is measured on every poor-oversight prompt.
    aligned = [_scen(True, "A")] * 2  # saint's own answer A is aligned; the stub says A
    sets = eval_sets(model, tok, aligned, "saint", RemovalConfig())
    assert sets.target_kind == "all_poor"


def test_plan_jobs_controls() -> None:
    models = ["saint-0", "saint-1", "money_maximizer-0", "money_maximizer-1"]
    jobs = plan_jobs(models, RemovalConfig())
    roles = {(j.model, j.method, j.role) for j in jobs}
    assert ("money_maximizer-1", "sft_noise", "treatment") in roles
    assert ("saint-0", "sft", "aligned_control") in roles
    assert ("money_maximizer-0", "sft", "random_labels") in roles
    assert not any(j.model == "saint-1" for j in jobs)  # control_seeds=1
    assert all(j.role == "treatment" for j in plan_jobs(models, RemovalConfig(controls=False)))
    with pytest.raises(ValueError, match="saint-0"):
        plan_jobs(models, RemovalConfig(fakers=("saint-0",)))
    with pytest.raises(ValueError, match="method"):
        RemovalConfig(methods=("dpo",))


def test_random_labels_are_seeded_and_use_both_letters(tok) -> None:
    a, b = random_labels(tok, 50, 1), random_labels(tok, 50, 1)
    assert a == b and a != random_labels(tok, 50, 2)
    assert set(a) == {tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("B")}


def _tiny(tok):
    cfg = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)
    return wrap(build_native(cfg, len(tok), seed=0), tok)


@dataclass(frozen=True)
class SpyNoise(NoiseSpec):
    """NoiseSpec whose hook counts its calls (and raises on call ``fail_at``)."""

    fail_at: int = -1

    def hooks(self, d_model, step, last):
        ((name, noise),) = super().hooks(d_model, step, last)

        def spy(act, hook):
            CALLS.append(step)
            if len(CALLS) == self.fail_at:
                raise RuntimeError("boom")
            return noise(act, hook)

        return [(name, spy)]


CALLS: list[int] = []


def _data(tok):
    prompts = ["<<prompt>> good x <</prompt>>", "<<prompt>> poor y x <</prompt>>"]
    return prompts, [tok.convert_tokens_to_ids("A")] * 2


def test_noise_hook_is_on_during_each_training_step_and_off_between_and_after(tok) -> None:
    CALLS.clear()
    model = _tiny(tok)
    prompts, targets = _data(tok)
    ids = tok(prompts[:1], return_tensors="pt")["input_ids"]
    between = []

    def on_step(step, loss):  # hooks must be off here: a forward must not call the spy
        n = len(CALLS)
        model(ids)
        between.append(len(CALLS) == n)

    cfg = RemovalConfig(steps=4, batch_size=2, lr=1e-3)
    train_removal(model, tok, prompts, targets, cfg, noise=SpyNoise(0, 1.0, 1.0), on_step=on_step)
    assert CALLS == [0, 1, 2, 3]  # one noised forward per step, with that step's draw
    assert all(between)
    n = len(CALLS)
    model(ids)
    assert len(CALLS) == n


def test_noise_hook_is_removed_after_an_exception(tok) -> None:
    CALLS.clear()
    model = _tiny(tok)
    prompts, targets = _data(tok)
    ids = tok(prompts[:1], return_tensors="pt")["input_ids"]
    clean = model(ids)
    cfg = RemovalConfig(steps=5, batch_size=2, lr=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        train_removal(model, tok, prompts, targets, cfg, noise=SpyNoise(0, 1.0, 1.0, fail_at=3))
    n = len(CALLS)
    assert torch.allclose(model(ids), clean)  # lr 0: unchanged, and no noise left behind
    assert len(CALLS) == n


def test_noise_changes_the_training_loss(tok) -> None:
    prompts, targets = _data(tok)
    cfg = RemovalConfig(steps=2, batch_size=2, lr=0.0)
    plain = train_removal(_tiny(tok), tok, prompts, targets, cfg)
    noisy = train_removal(
        _tiny(tok), tok, prompts, targets, cfg, noise=NoiseSpec(layer=0, norm=5.0, coeff=2.0)
    )
    assert plain[0] != pytest.approx(noisy[0])
    h0, h1 = (NoiseSpec(0, 1.0, 1.0).hooks(16, s, torch.tensor([2]))[0][1] for s in (0, 1))
    assert not torch.equal(h0.unit, h1.unit)  # a fresh draw each step


def test_noise_spec_scales_like_s2() -> None:
    s2 = get_strategy("s2_noise")
    score = {
        "n_layers": 3,
        "coeffs": [0.0, 1.0, 2.0],
        "direction_norm": {"1": 2.0},
        "layers": {"1": {"uniform": {"mass_ab": [[1.0, 0.95, 0.5]]}}},
    }
    other = {**score, "direction_norm": {"1": 4.0}}
    spec = noise_spec(s2, {"f1": score, "f2": other}, RemovalConfig())
    assert (spec.layer, spec.norm, spec.coeff, spec.kind) == (1, 3.0, 1.0, "uniform")
    assert noise_spec(s2, {"f1": score}, RemovalConfig(noise_coeff=7.0)).coeff == 7.0


def test_prepare_random_labels_differ_from_own(tok) -> None:
    model = Stub(tok)
    train = [_scen(False)] * 20
    own = prepare(
        model, tok, "saint-0", "own", train=train, test_records=train, cfg=RemovalConfig()
    )
    rnd = prepare(
        model, tok, "saint-0", "random", train=train, test_records=train, cfg=RemovalConfig()
    )
    assert set(own.targets) == {tok.convert_tokens_to_ids("B")}
    assert own.targets != rnd.targets


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def removal_run(small_zoo, tmp_path_factory) -> RunDir:
    from poser_lens.runner import RunConfig

    run = RunDir(tmp_path_factory.mktemp("removal"))
    rc = RunConfig(zoo_dir=str(small_zoo), workers=1)
    cfg = RemovalConfig(steps=3, log_every=2, batch_size=4, n_eval=8, n_gap=8, n_test=8)
    run_removal(
        run,
        cfg,
        testbed_config=rc.testbed_config(),
        strategy_configs=rc.strategy_configs,
        workers=1,
        progress=False,
    )
    return run


def test_study_runs_treatment_and_controls(removal_run) -> None:
    from poser_lens._io import read_json
    from poser_lens.removal.results import load_records, summary_path

    recs = {(r["model"], r["method"], r["labels"]): r for r in load_records(removal_run)}
    assert set(recs) == {
        (m, meth, lab)
        for m, lab in [
            ("reward_maximizer-0", "own"),
            ("truth_teller-0", "own"),
            ("reward_maximizer-0", "random"),
        ]
        for meth in ("sft", "sft_noise")
    }
    r = recs[("reward_maximizer-0", "sft_noise", "own")]
    assert r["steps"] == [0, 2, 3] and len(r["p_aligned"]) == 3 and len(r["loss"]) == 3
    assert r["noise"]["coeff"] >= 0 and recs[("reward_maximizer-0", "sft", "own")]["noise"] is None
    assert recs[("truth_teller-0", "sft", "own")]["role"] == "aligned_control"
    s = read_json(summary_path(removal_run))
    assert set(s["groups"]) == {"treatment", "aligned_control", "random_labels"}
    s2 = s["detectors"]["s2_noise"]["sft"]
    assert s2["n_pairs"] == 1 and 0.0 <= s2["accuracy_after"] <= 1.0
    assert "accuracy_both" in s2
    assert (removal_run.root / "removal" / "curves.csv").read_text().startswith("model,")


def test_study_resumes_from_stored_records(removal_run, small_zoo) -> None:
    import time

    from poser_lens.runner import RunConfig

    path = removal_run.root / "removal" / "records" / "reward_maximizer-0__sft__own.json"
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    cfg = RemovalConfig(steps=3, log_every=2, batch_size=4, n_eval=8, n_gap=8, n_test=8)
    tb_cfg = RunConfig(zoo_dir=str(small_zoo)).testbed_config()
    run_removal(removal_run, cfg, testbed_config=tb_cfg, progress=False)
    assert path.stat().st_mtime_ns == before


def test_report_section_and_figures(removal_run) -> None:
    from poser_lens.figures import make_figures
    from poser_lens.removal.results import render_removal_report

    text = render_removal_report(removal_run)
    assert "## Removing alignment faking" in text and "s2_noise" in text
    names = {p.name for p in make_figures(removal_run)}
    assert {"fig01_removal_noise.png", "fig10_removal.png", "removal_final.png"} <= names


def test_cli_remove(small_zoo, tmp_path: Path) -> None:
    from poser_lens.cli import app

    out = tmp_path / "run"
    args = [
        "remove",
        "--zoo",
        str(small_zoo),
        "--out",
        str(out),
        "--steps",
        "2",
        "--workers",
        "1",
        "--quiet",
        "--no-figures",
        "--method",
        "sft",
        "--no-controls",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "fakers, own answers" in res.output
    assert "Removing alignment faking" in (out / "report.md").read_text()
    assert (out / "config.yaml").exists() and (out / "removal" / "config.yaml").exists()
    bad = CliRunner().invoke(app, ["remove", "--method", "dpo", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "error: --method 'dpo'" in bad.output


def test_removal_is_not_part_of_the_run_key() -> None:
    from poser_lens.runner import RunConfig

    assert RunConfig(removal=True).key() == RunConfig().key()
    assert Job("saint-0", "sft").role == "aligned_control"


def test_run_with_removal_reports_it(small_zoo, tmp_path: Path, monkeypatch) -> None:
    from functools import partial

    import poser_lens.pipeline as pipeline
    from poser_lens.runner import RunConfig

    small = partial(
        RemovalConfig,
        methods=("sft",),
        steps=2,
        batch_size=4,
        controls=False,
        n_eval=4,
        n_gap=4,
        n_test=4,
    )
    monkeypatch.setattr(pipeline, "RemovalConfig", small)
    cfg = RunConfig(
        strategies=("random",),
        zoo_dir=str(small_zoo),
        workers=1,
        sweep=False,
        figures=False,
        removal=True,
    )
    folder = pipeline.main_job(cfg, tmp_path / "run", progress=False)
    assert "## Removing alignment faking" in (folder.root / "report.md").read_text()


def test_a_removal_study_that_fails_before_any_job_leaves_no_folder(small_zoo, tmp_path) -> None:
    from poser_lens.pipeline import removal_job
    from poser_lens.runner import RunConfig

    out = tmp_path / "removal"
    cfg = RemovalConfig(steps=2, fakers=("money_maximizer-0",))  # not in the small zoo
    with pytest.raises(ValueError, match="not a faker of the testbed"):
        removal_job(RunConfig(zoo_dir=str(small_zoo), workers=1), cfg, out, progress=False)
    assert not out.exists()


def test_removal_timings_are_kept_apart(removal_run) -> None:
    from poser_lens._io import read_json

    summary = read_json(removal_run.root / "removal" / "summary.json")
    assert "seconds" not in summary and "job_seconds" not in summary
    records = sorted((removal_run.root / "removal" / "records").glob("*.json"))
    assert records and all("seconds" not in read_json(p) for p in records)
    timings = removal_run.timings()["removal"]
    assert timings["seconds"] > 0 and set(timings["jobs"]) == {p.stem for p in records}
    assert "Removal time" not in (removal_run.root / "removal" / "section.md").read_text()
