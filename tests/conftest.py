"""Shared test setup: offline Hugging Face, and the Poser-layout fixture folder."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Tests never touch the user's cache: zoos built by tests go to a temporary folder.
import tempfile

os.environ["POSER_LENS_CACHE"] = tempfile.mkdtemp(prefix="poser_lens_test_cache_")

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
#: The checkout (benchmark scripts import this checkout's package, not an installed copy).
ROOT = Path(__file__).parents[1]


def run_benchmark(script: str, *args: str, cwd: Path | None = None, timeout: float | None = None):
    """Run ``benchmarks/<script>`` with ``args`` in a fresh interpreter; its CompletedProcess.

    Output is captured as text; the script imports this checkout (``PYTHONPATH``) and draws
    without a display (``MPLBACKEND=Agg``). The caller checks the return code.
    """
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


#: A small Poser checkout (our own invented records, in Poser's schema).
POSER_ROOT = FIXTURES / "poser_root"


@pytest.fixture
def poser_root() -> Path:
    """The read-only Poser fixture checkout."""
    return POSER_ROOT


@pytest.fixture
def poser_copy(tmp_path: Path) -> Path:
    """A writable copy of the Poser fixture checkout."""
    return Path(shutil.copytree(POSER_ROOT, tmp_path / "poser"))


#: A Poser checkout whose names are spelled as the real release spells them, and worse (our own
#: invented records): probs keys in other folders and with ``_`` before the seed, mixed within
#: a file and a record; ``Saint-and-Fitness.json``; ``Truth-Teller/train_0.json``;
#: ``reward-maximizer/``; pairs spelled ``saint_0`` or as paths, one without valid_data, one
#: with an extra key. Every faker is less confident than every aligned model (``saint_10``,
#: in probs but in no pair, is the least confident of all).
POSER_IRREGULAR = FIXTURES / "poser_irregular"


@pytest.fixture
def poser_irregular() -> Path:
    """The read-only irregular Poser fixture checkout."""
    return POSER_IRREGULAR


@pytest.fixture
def poser_totals() -> dict:
    """What ``inspect_root`` counts in the fixture checkout."""
    return {
        "benchmark": {"files": 1, "records": 4},
        "training": {"files": 3, "records": 14},
        "policy_definitions": {"files": 1, "records": 2},
        "model_pairs": 4,
        "concepts": 2,
    }


def small_zoo_config(**changes):
    """A zoo config that builds in seconds: one aligned and one faking model, tiny settings."""
    from dataclasses import replace

    from poser_lens.data.generator import GeneratorConfig
    from poser_lens.models.tiny import TinyConfig
    from poser_lens.models.training import TrainConfig
    from poser_lens.models.zoo import ZooConfig

    cfg = ZooConfig(
        seeds=1,
        personas=("truth_teller", "reward_maximizer"),
        generator=GeneratorConfig(n_per_family=40, n_benchmark_per_family=12, n_error=30),
        model=TinyConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64),
        base=TrainConfig(steps=4, lr=3e-3, batch_size=16),
        finetune=TrainConfig(steps=3, lr=1e-3, batch_size=16),
        train_size=64,
        workers=1,
        threshold=0.0,
        # Three fine-tuning steps leave the models far from any confidence target, so the
        # matched recipe's temperature would be fitted to noise; the strategies' tests run on
        # plain hard-label models (tests/models/test_zoo.py covers the matched recipe).
        recipe="hard",
    )
    return replace(cfg, **changes)


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory) -> Path:
    """A built two-model zoo (truth_teller-0, reward_maximizer-0), shared by the session."""
    from poser_lens.models.zoo import build_zoo

    return build_zoo(small_zoo_config(), tmp_path_factory.mktemp("zoo"), progress=False)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (as the runner's workers; threads oversubscribe a 2-core CPU).

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_llama(vocab: int = 50, n_layers: int = 2, seed: int = 0, **config):
    """A tiny random LLaMA causal LM (HF), seeded without touching the global RNG."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        **config,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(cfg).eval()


def fresh(ctx):
    """A strategy context again, with an empty memo (nothing shared with an earlier strategy)."""
    from poser_lens.strategies import ModelContext

    return ModelContext(ctx.name, ctx.model, ctx.tokenizer, ctx.family, ctx.prompts, ctx.concepts)


def flops_agree(analytic: float, measured: float, tol: float = 0.10) -> bool:
    """Whether an analytic FLOP count is within ``tol`` (relative) of a measured one."""
    return measured > 0 and abs(analytic / measured - 1) <= tol
