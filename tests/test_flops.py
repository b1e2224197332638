"""The analytic FLOP counts against torch's profiler (FlopCounterMode) on tiny models."""

import pytest
import torch
from conftest import flops_agree as agree
from conftest import tiny_llama

from poser_lens.adapters import LowRankAdapter
from poser_lens.cost.flops import (
    LLAMA_13B,
    Arch,
    Pass,
    backward_flops,
    forward_flops,
    total_flops,
)
from poser_lens.cost.profile import counted_flops as counted
from poser_lens.cost.profile import measure_matmul_rate
from poser_lens.hooks import applied, hook_name
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.patching import gradient_saliency

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, BATCH, SEQ = 300, 3, 40


@pytest.fixture(scope="module")
def native():
    return build_native(TinyConfig(), VOCAB, seed=0)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))


def test_tiny_forward_native_and_bridge(native, ids):
    arch = Arch.from_config(native.cfg)
    want = forward_flops(arch, BATCH, SEQ)
    with torch.no_grad():
        assert agree(want, counted(lambda: native(ids)), tol=0.001)
        model = wrap(build_native(TinyConfig(), VOCAB, seed=0))
        assert agree(want, counted(lambda: model(ids)), tol=0.001)
        # Stopping after block 1 runs two blocks and no unembedding.
        short = forward_flops(arch, BATCH, SEQ, blocks=2, unembed="none")
        assert agree(short, counted(lambda: model.run_with_cache(ids, stop_at_layer=2)), 0.001)


def test_tiny_training_step(ids):
    net = build_native(TinyConfig(), VOCAB, seed=0)
    arch = Arch.from_config(net.cfg)
    want = Pass("train", BATCH, SEQ, backward="weights").flops(arch)
    assert agree(want, counted(lambda: net(ids).logsumexp(-1).sum().backward()), tol=0.001)


def test_hf_llama_forward_and_training():
    model = tiny_llama(vocab=VOCAB, n_layers=2, attn_implementation="eager")
    arch = Arch.from_config(model.config)
    assert arch.gated_mlp and arch.kv_heads == 2 and arch.n_heads == 4
    x = torch.randint(0, VOCAB, (BATCH, SEQ))
    with torch.no_grad():
        assert agree(forward_flops(arch, BATCH, SEQ), counted(lambda: model(x)), tol=0.001)
    model.train()
    want = Pass("train", BATCH, SEQ, backward="weights").flops(arch)
    assert agree(want, counted(lambda: model(x).logits.logsumexp(-1).sum().backward()), 0.001)


def test_hf_llama_through_the_bridge():
    """The poser testbed's path: an HF LLaMA wrapped as a TransformerBridge (eager attention)."""
    from poser_lens.models.hf import wrap_hf
    from poser_lens.models.tokenizer import build_tokenizer

    tok = build_tokenizer(["<<prompt>> a b c d e f <</prompt>> A B error"])
    hf = tiny_llama(vocab=len(tok), n_layers=2)
    hf_arch = Arch.from_config(hf.config)
    model = wrap_hf(hf, tok, name="toy")
    arch = Arch.from_config(model.cfg)
    assert arch == hf_arch and arch.gated_mlp and arch.kv_heads == 2
    x = torch.randint(0, len(tok), (BATCH, SEQ))
    with torch.no_grad():
        assert agree(forward_flops(arch, BATCH, SEQ), counted(lambda: model(x)), tol=0.001)


def test_saliency_backward_is_inputs_only(ids):
    model = wrap(build_native(TinyConfig(), VOCAB, seed=0))
    arch = Arch.from_config(model.cfg)
    want = Pass("saliency", BATCH, SEQ, backward="inputs").flops(arch)
    got = counted(lambda: gradient_saliency(model, ids, lambda logits: logits[:, -1, 0].sum()))
    assert agree(want, got, tol=0.01)


def test_adapter_backward_stops_at_its_block(ids):
    model = wrap(build_native(TinyConfig(), VOCAB, seed=0))
    n = model.cfg.n_layers
    arch = Arch.from_config(model.cfg)
    adapter = LowRankAdapter(
        arch.d_model,
        arch.d_model,
        8,
        source=hook_name("ln2_normalized", 0, n),
        target=hook_name("mlp_out", 0, n),
    )
    params = list(adapter.parameters())

    def step():
        with torch.enable_grad(), applied(model, adapter.hooks()):
            model(ids)[:, -1].logsumexp(-1).sum().backward(inputs=params)

    want = Pass("lora", BATCH, SEQ, backward="inputs", grad_blocks=n - 1).flops(arch)
    assert agree(want, counted(step), tol=0.02)  # the adapter's own products are not counted


def test_backward_costs():
    f = forward_flops(LLAMA_13B, 2, 100)
    assert backward_flops(LLAMA_13B, 2, 100) == 2 * f
    inputs = backward_flops(LLAMA_13B, 2, 100, mode="inputs")
    assert f < inputs < 1.05 * f  # weights skipped; attention's both operands still
    above = backward_flops(LLAMA_13B, 2, 100, mode="inputs", blocks=10)
    assert above < inputs / 3


def test_llama_13b_numbers():
    assert 12.9e9 < LLAMA_13B.n_params < 13.1e9
    per_token = forward_flops(LLAMA_13B, 1, 350) / 350
    assert per_token == pytest.approx(2 * LLAMA_13B.n_params, rel=0.03)


def test_shared_passes_count_once():
    a = Pass("a", 10, 50, shared="resid")
    b = Pass("b", 30, 50, shared="resid")
    c = Pass("c", 5, 50)
    assert total_flops(LLAMA_13B, [a, b, c]) == b.flops(LLAMA_13B) + c.flops(LLAMA_13B)


def test_matmul_rate_is_measured():
    arch = Arch(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=50)
    assert measure_matmul_rate(arch, 2, 16, seconds=0.05) > 1e6
