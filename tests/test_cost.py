"""The cost model: each strategy's declared work against torch's profiler on the tiny zoo's
models, the Poser-style loop against the reference loop of benchmarks/strategy_speed.py, the
paper-scale report and ``poser-lens cost``."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
from conftest import flops_agree as agree
from conftest import fresh, small_zoo_config
from typer.testing import CliRunner

from poser_lens.cli import app
from poser_lens.config import ConfigError
from poser_lens.cost import (
    GPUS,
    CostConfig,
    FamilyShape,
    cost_report,
    measure_shape,
    poser_families,
    shared_total,
    strategy_cost,
    work,
)
from poser_lens.cost.declarations import undeclared
from poser_lens.cost.flops import LLAMA_13B, Arch, forward_flops, total_flops
from poser_lens.cost.profile import counted_flops as counted
from poser_lens.data.concepts import concept_sets
from poser_lens.data.poser import load_benchmark
from poser_lens.models.zoo import load_zoo_model
from poser_lens.strategies import STRATEGY_NAMES, ModelContext, get_strategy, strategy_class
from poser_lens.strategies.memo import MemoKey

pytestmark = pytest.mark.usefixtures("one_thread")

#: Settings that fit the small zoo (12 valid prompts per family).
SMALL = {
    "s1_belief": {"n_pairs": 3},
    "s2_noise": {"n_pairs": 3},
    "s3_lora": {"n_heldout": 3, "batch_size": 2, "n_steps": 3},
    "s3_full": {"n_heldout": 3, "batch_size": 2, "n_steps": 3},
}
MODEL_STRATEGIES = [n for n in STRATEGY_NAMES if strategy_class(n).needs_model and n != "random"]


FAMILY = "truth_and_reward"


@pytest.fixture(scope="module")
def ctx(small_zoo):
    prompts = load_benchmark(small_zoo / "poser")[FAMILY]
    concepts = concept_sets(small_zoo_config().generator, family=FAMILY, n_examples=6)
    model, tok = load_zoo_model(small_zoo, "reward_maximizer-0")
    return ModelContext("reward_maximizer-0", model, tok, FAMILY, prompts, concepts=concepts)


@pytest.fixture(scope="module")
def shaped(ctx):
    arch = Arch.from_config(ctx.model.cfg)
    shape = measure_shape(
        ctx.tokenizer, ctx.prompts, ctx.concepts, n_layers=arch.n_layers, n_ctx=arch.n_ctx
    )
    return arch, shape


@pytest.mark.parametrize("name", MODEL_STRATEGIES)
def test_declared_work_matches_the_profiler(ctx, shaped, name):
    arch, shape = shaped
    strategy = get_strategy(name, **SMALL.get(name, {}))
    analytic = total_flops(arch, work(strategy, shape))  # its own shared passes once
    measured = counted(lambda: strategy.score_model(fresh(ctx)))
    assert agree(analytic, measured), (name, analytic, measured)


def test_a_strategys_own_shared_work_is_counted_once(ctx, shaped):
    """Two adapter curves start from one held-out read (memoised), as the cost counts it."""
    arch, shape = shaped
    strategy = get_strategy("s3_lora", **SMALL["s3_lora"], layers=(5 / 40, 1.0))
    passes = work(strategy, shape)
    analytic = total_flops(arch, passes)
    assert analytic < sum(p.flops(arch) for p in passes)
    assert agree(analytic, counted(lambda: strategy.score_model(fresh(ctx))), tol=0.02)


def test_shared_work_is_counted_once(ctx, shaped):
    """Strategies of one context share their residual forwards, as the total assumes."""
    arch, shape = shaped
    strategies = [get_strategy(n, **SMALL.get(n, {})) for n in MODEL_STRATEGIES]
    together = fresh(ctx)
    measured = counted(lambda: [s.score_model(together) for s in strategies])
    alone = sum(total_flops(arch, work(s, shape)) for s in strategies)
    analytic = shared_total(strategies, arch, [FamilyShape(FAMILY, 1, shape)])
    assert analytic < alone
    assert agree(analytic, measured), (analytic, measured)


def _strategy_speed():
    path = Path(__file__).parents[1] / "benchmarks" / "strategy_speed.py"
    spec = importlib.util.spec_from_file_location("strategy_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_work_matches_the_reference_loops(ctx, shaped):
    """The Poser-style passes count what benchmarks/strategy_speed.py's loops do."""
    arch, shape = shaped
    bench = _strategy_speed()
    s2 = get_strategy("s2_noise", n_pairs=3, n_prompts=4, coeffs=(0.0, 1.0), layer_fracs=(0.5,))
    want = sum(p.flops(arch) for p in work(s2, shape, reference=True))
    # The reference loop recomputes the contrast direction per layer with early stops; the
    # declared reference reads every layer from one full forward per contrast prompt.
    assert agree(want, counted(lambda: bench.reference_s2(fresh(ctx), s2)), tol=0.15)
    s5 = get_strategy("s5_decision_speed", n_prompts=10)
    want = sum(p.flops(arch) for p in work(s5, shape, reference=True))
    assert agree(want, counted(lambda: bench.reference_s5(fresh(ctx), 10)), tol=0.05)


def test_poser_report():
    report = cost_report(CostConfig())
    assert (report.n_models, report.n_contexts) == (36, 108)
    assert [r.name for r in report.rows] == list(STRATEGY_NAMES)
    s5 = report.row("s5_decision_speed")
    prompts = sum(f.n_models * f.shape.n_valid for f in poser_families(CostConfig()))
    assert s5.flops == pytest.approx(prompts * forward_flops(LLAMA_13B, 1, 350), rel=0.05)
    assert report.row("s2_noise").ratio > 30  # packed variants against a forward each
    assert report.row("random").flops == 0 and math.isnan(report.row("random").ratio)
    assert report.total_flops < sum(r.flops for r in report.rows)  # shared residuals once
    assert report.fits(report.row("s3_lora")) and not report.fits(report.row("s3_full"))
    json.dumps(report.to_dict())


def test_gpus_and_gpu_scale_the_time():
    one, eight = cost_report(CostConfig()), cost_report(CostConfig(gpus=8))
    assert eight.seconds(1e18) == pytest.approx(one.seconds(1e18) / 7.2)
    a100 = cost_report(CostConfig(gpu="a100"))
    ratio = GPUS["h100"].bf16_flops / GPUS["a100"].bf16_flops
    assert a100.seconds(1e18) == pytest.approx(one.seconds(1e18) * ratio)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"gpu": "b200"}, "gpu: unknown gpu 'b200'"),
        ({"gpus": 0}, "gpus: must be >= 1, got 0"),
        ({"testbed": "tiny"}, "testbed: 'tiny'.*profile_run"),
        ({"utilisation": 0.0}, r"utilisation: must be in \(0, 1\]"),
        ({"prompt_tokens": 500}, "prompt_tokens: 500"),
        ({"strategies": ("s9",)}, r"strategies\[0\]: unknown strategy 's9'"),
    ],
)
def test_bad_settings_name_the_setting(changes, fragment):
    """CostConfig is a Config: each setting checked when it is built, one line naming it."""
    with pytest.raises(ConfigError, match=fragment):
        CostConfig(**changes)


def test_cost_config_round_trips():
    cfg = CostConfig(gpu="a100", gpus=8, utilisation=0.5)
    assert CostConfig.from_dict(cfg.to_dict()) == cfg


def test_shared_work_is_named_by_the_memo_keys():
    """Every strategy declares its work, and the passes it shares carry the names of the run's
    memo keys (poser_lens.strategies.memo), none written by hand."""
    assert undeclared() == []
    kinds = {cls.__name__ for cls in MemoKey.__subclasses__()}
    shape = poser_families(CostConfig())[0].shape
    shared = {p.shared for n in STRATEGY_NAMES for p in work(get_strategy(n), shape) if p.shared}
    assert len(shared) > 3 and all(s.split("(")[0] in kinds for s in shared), shared


def test_strategy_cost_of_a_modelless_strategy_is_zero():
    cost = strategy_cost(get_strategy("ensemble"), LLAMA_13B, poser_families(CostConfig()))
    assert cost.flops == cost.memory_bytes == 0


runner = CliRunner()


def test_cli_cost_table():
    result = runner.invoke(app, ["cost", "--testbed", "poser", "--gpus", "4"])
    assert result.exit_code == 0, result.output
    for fragment in ("s2_noise", "patching", "total", "H100", "40%", "350 tokens", "4 x"):
        assert fragment in result.output


def test_cli_cost_json():
    result = runner.invoke(app, ["cost", "--json", "--gpu", "a100"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gpu"]["name"].startswith("A100") and data["n_models"] == 36


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gpu", "b200"], "--gpu"),
        (["--gpus", "0"], "--gpus"),
        (["--testbed", "tiny"], "--testbed: 'tiny'"),
        (["--utilisation", "1.5"], "--utilisation: must be in (0, 1]"),
        (["--prompt-tokens", "10"], "--prompt-tokens: 10"),
    ],
)
def test_cli_cost_bad_input_is_one_line(args, fragment):
    result = runner.invoke(app, ["cost", *args])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
