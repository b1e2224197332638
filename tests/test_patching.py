import torch

from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.patching import attention_to_span, gradient_saliency, patch_grid

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16)
CLEAN = torch.tensor([[1, 2, 3, 4, 5]])
CORRUPT = torch.tensor([[1, 2, 9, 4, 5]])


def metric(logits):
    return logits[0, -1, 3] - logits[0, -1, 4]


def model():
    return wrap(build_native(CFG, d_vocab=20, seed=0))


def test_patching_clean_into_clean_changes_nothing():
    m = model()
    base = float(metric(m(CLEAN)).detach())
    grid = patch_grid(m, CLEAN, CLEAN, metric)
    assert grid.shape == (2, 5)
    torch.testing.assert_close(grid, torch.full((2, 5), base), atol=1e-5, rtol=1e-5)


def test_patching_the_changed_token_reproduces_the_counterfactual():
    m = model()
    grid = patch_grid(m, CLEAN, CORRUPT, metric)
    corrupt = float(metric(m(CORRUPT)).detach())
    clean = float(metric(m(CLEAN)).detach())
    # At layer 0 the residual differs only at position 2: patching it there is the whole effect.
    assert abs(float(grid[0, 2]) - corrupt) < 1e-4
    assert abs(float(grid[0, 0]) - clean) < 1e-4


def test_attention_to_span_and_saliency():
    m = model()
    span = torch.zeros(1, 5, dtype=torch.bool)
    span[0, :] = True
    att = attention_to_span(m, CLEAN, span)
    torch.testing.assert_close(att, torch.ones(1, 2, 2), atol=1e-5, rtol=1e-5)
    sal = gradient_saliency(m, CLEAN, metric)
    assert sal.shape == (1, 5) and (sal >= 0).all() and sal.sum() > 0
