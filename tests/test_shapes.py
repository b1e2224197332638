"""jaxtyping shapes checked at runtime: each public function, wrapped with jaxtyping + beartype,
accepts a correctly shaped call and rejects a wrongly shaped one."""

import pytest
import torch
from beartype import beartype
from jaxtyping import TypeCheckError, jaxtyped

from poser_lens import activations, hooks, patching, probes, readout
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.readout import AnswerIds


def checked(fn):
    return jaxtyped(typechecker=beartype)(fn)


CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16)
CLEAN = torch.tensor([[1, 2, 3, 4]])
CORRUPT = torch.tensor([[1, 7, 3, 4]])


@pytest.fixture(scope="module")
def model():
    return wrap(build_native(CFG, d_vocab=20, seed=0))


def metric(logits):
    return logits[:, -1, 3].mean()


def test_hooks_shapes():
    mask = checked(hooks.position_mask)
    assert mask("last", 2, 3, last=torch.tensor([0, 2])).shape == (2, 3)
    with pytest.raises(TypeCheckError):
        mask("last", 2, 3, last=torch.tensor([[0, 2]]))  # last must be 1-D
    with pytest.raises(TypeCheckError):
        mask("last", 2, 3, last=torch.tensor([0.0, 2.0]))  # and integer
    assert checked(hooks.draw_noise)(8, seed=0).shape == (8,)
    tok = build_tokenizer(["a b c"])
    spans = checked(hooks.span_mask)
    assert spans(tok, ["a b c"], [[(2, 3)]]).dtype == torch.bool


def test_probe_shapes():
    cos = checked(probes.cosine_scores)
    assert cos(torch.randn(5, 4), torch.randn(4)).shape == (5,)
    with pytest.raises(TypeCheckError):
        cos(torch.randn(5, 4), torch.randn(3))  # d differs
    with pytest.raises(TypeCheckError):
        cos(torch.randn(5, 4), torch.randn(1, 4))  # direction must be 1-D
    for finder in (probes.mass_mean(), probes.mass_mean(covariance=True), probes.pca()):
        find = checked(finder)
        assert find(torch.randn(6, 4), torch.randn(6, 4)).shape == (4,)
        with pytest.raises(TypeCheckError):
            find(torch.randn(6, 4), torch.randn(6, 5))
    with pytest.raises(TypeCheckError):
        checked(probes.pca())(torch.randn(6, 4), torch.randn(5, 4))  # pca needs pairs


def test_readout_shapes():
    read = checked(readout.answer_readout)
    ids = AnswerIds(a=0, b=1, error=2)
    assert read(torch.randn(3, 5), ids).p_a.shape == (3,)
    with pytest.raises(TypeCheckError):
        read(torch.randn(3, 4, 5), ids)  # logits of every position instead of the last


def test_last_logits_shapes(model):
    last_logits = checked(readout.last_logits)
    ids = torch.tensor([[1, 2, 3], [1, 4, 0]])
    with torch.no_grad():
        assert last_logits(model, ids, torch.tensor([2, 1])).shape == (2, 20)
        with pytest.raises(TypeCheckError):
            last_logits(model, ids, torch.tensor([2, 1, 0]))  # one last index per row
    tok = build_tokenizer(["a b c"])
    ids, last = checked(readout.encode)(tok, ["a b c", "a"])
    assert ids.shape == (2, 4) and last.tolist() == [3, 1]


def test_activation_shapes():
    prompts = ["a b", "c"]
    tok = build_tokenizer(prompts)
    net = wrap(build_native(CFG, d_vocab=len(tok), seed=0), tok)
    collect = checked(activations.collect)
    assert collect(net, tok, prompts).shape == (2, 3, 16)


def test_patching_shapes(model):
    grid = checked(patching.patch_grid)
    assert grid(model, CLEAN, CORRUPT, metric, positions=[-1]).shape == (2, 4)
    with pytest.raises(TypeCheckError):
        grid(model, CLEAN[0], CORRUPT[0], metric)  # tokens need a batch dimension
    with pytest.raises(TypeCheckError):
        grid(model, CLEAN.float(), CORRUPT.float(), metric)  # token ids are integers
    heads = checked(patching.patch_head_grid)
    assert heads(model, CLEAN, CORRUPT, metric, layers=[1]).shape == (2, 2)
    per_pos = heads(model, CLEAN, CORRUPT, metric, per_position=True, positions=[3], layers=[1])
    assert per_pos.shape == (2, 2, 4)
    span = checked(patching.attention_to_span)
    assert span(model, CLEAN, torch.ones(1, 4, dtype=torch.bool)).shape == (1, 2, 2)
    with pytest.raises(TypeCheckError):
        span(model, CLEAN, torch.ones(1, 5, dtype=torch.bool))  # pos differs
    with pytest.raises(TypeCheckError):
        span(model, CLEAN, torch.ones(1, 4))  # a span is a boolean mask
    saliency = checked(patching.gradient_saliency)
    assert saliency(model, CLEAN, metric).shape == (1, 4)
    with pytest.raises(TypeCheckError):
        saliency(model, CLEAN[0], metric)
    frame = checked(patching.grid_frame)
    assert len(frame(torch.zeros(2, 3), "resid_pre")) == 6
