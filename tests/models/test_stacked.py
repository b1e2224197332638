import copy

import pytest
import torch

from poser_lens.models.stacked import StackedBatch, StackedNative
from poser_lens.models.tiny import TinyConfig, build_native
from poser_lens.readout import last_logits

CFG = TinyConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64)
VOCAB = 40
PAD = 0


def _rows(n_models: int, batch: int, width: int, seed: int = 0):
    """Right-padded random rows of random lengths (some of length 1)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n_models, batch, width), generator=g)
    last = torch.randint(0, width, (n_models, batch), generator=g)
    last[0, 0] = 0
    ids = torch.where(torch.arange(width) > last[..., None], PAD, ids)
    return ids, last


@pytest.mark.parametrize("norm", ["LN", "RMS"])
@pytest.mark.parametrize("buckets", [1, 3])
def test_stacked_forward_equals_each_native_model(norm, buckets):
    cfg = TinyConfig(**{**CFG.__dict__, "normalization_type": norm})
    nets = [build_native(cfg, VOCAB, seed=s) for s in range(3)]
    stack = StackedNative.stack(nets)
    ids, last = _rows(3, 6, 20)
    with torch.no_grad():
        got = stack(StackedBatch.build(ids, last, pad_id=PAD, buckets=buckets))
        for m, net in enumerate(nets):
            torch.testing.assert_close(got[m], last_logits(net, ids[m], last[m]), atol=1e-5, rtol=0)


def test_parameters_have_the_native_names_and_unstack_exactly():
    nets = [build_native(CFG, VOCAB, seed=s) for s in range(2)]
    stack = StackedNative.stack(nets)
    assert [n for n, _ in stack.named_parameters()] == [n for n, _ in nets[0].named_parameters()]
    assert stack.head.weight.shape == (2, VOCAB, CFG.d_model)
    fresh = [build_native(CFG, VOCAB, seed=9) for _ in range(2)]
    stack.unstack_into(fresh)
    for net, back in zip(nets, fresh, strict=True):
        for (name, a), b in zip(net.state_dict().items(), back.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="unstack"):
        stack.unstack_into(fresh[:1])


def test_models_never_mix():
    """Each model's loss reaches its own parameters only."""
    nets = [build_native(CFG, VOCAB, seed=s) for s in range(3)]
    stack = StackedNative.stack(nets)
    ids, last = _rows(3, 4, 12)
    stack(StackedBatch.build(ids, last, pad_id=PAD))[1].sum().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None, name
        assert not p.grad[0].any() and not p.grad[2].any(), name


def test_padding_and_filler_change_nothing():
    nets = [build_native(CFG, VOCAB, seed=s) for s in range(2)]
    stack = StackedNative.stack(nets)
    ids, last = _rows(2, 5, 10)
    wider = torch.cat([ids, torch.full((2, 5, 7), PAD)], -1)
    with torch.no_grad():
        a = stack(StackedBatch.build(ids, last, pad_id=PAD, buckets=2))
        b = stack(StackedBatch.build(wider, last, pad_id=PAD, buckets=1))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_layout_keeps_every_real_token_once():
    ids, last = _rows(3, 7, 15, seed=1)
    batch = StackedBatch.build(ids, last, pad_id=PAD, buckets=3)
    lengths = last + 1
    assert batch.ids.shape == (3, int(lengths.sum(1).max()) + 1)
    assert sorted(torch.cat([b.rows for b in batch.buckets]).tolist()) == list(range(21))
    for m in range(3):
        real = [t for b in range(7) for t in ids[m, b, : lengths[m, b]].tolist()]
        assert batch.ids[m, : len(real)].tolist() == real
    flat = batch.ids.reshape(-1)
    assert torch.equal(flat[batch.last_slot.reshape(-1)], ids.gather(2, last[..., None]).view(-1))


def test_unsupported_architectures_are_refused():
    net = build_native(CFG, VOCAB)
    other = copy.deepcopy(net)
    other.cfg.gated_mlp = True
    with pytest.raises(ValueError, match="gated_mlp"):
        StackedNative.stack([other])
    with pytest.raises(ValueError, match="one architecture"):
        StackedNative.stack([net, build_native(CFG, VOCAB + 1)])
