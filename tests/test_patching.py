import pytest
import torch

from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.patching import (
    attention_to_span,
    gradient_saliency,
    grid_frame,
    patch_grid,
    patch_head_grid,
)

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


def test_positions_and_layers_restrict_the_grid():
    m = model()
    full = patch_grid(m, CLEAN, CORRUPT, metric, kind="mlp_out")
    some = patch_grid(m, CLEAN, CORRUPT, metric, kind="mlp_out", positions=[2, -1], layers=[1.0])
    computed = ~some.isnan()
    assert computed.nonzero().tolist() == [[1, 2], [1, 4]]
    torch.testing.assert_close(some[computed], full[computed])
    with pytest.raises(ValueError, match="outside"):
        patch_grid(m, CLEAN, CORRUPT, metric, positions=[5])
    with pytest.raises(ValueError, match="pattern"):
        patch_grid(m, CLEAN, CORRUPT, metric, kind="pattern")


@pytest.mark.parametrize("kind", ["resid_pre", "resid_post", "attn_out", "mlp_out"])
def test_every_kind_is_a_no_op_clean_into_clean(kind):
    m = model()
    base = float(metric(m(CLEAN)).detach())
    grid = patch_grid(m, CLEAN, CLEAN, metric, kind=kind, positions=[0, 2, 4])
    torch.testing.assert_close(grid[:, [0, 2, 4]], torch.full((2, 3), base), atol=1e-5, rtol=0)


def test_batched_grid_equals_the_mean_of_single_rows():
    m = model()
    clean = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    corrupt = torch.tensor([[1, 2, 9, 4, 5], [5, 4, 8, 2, 1]])

    def mean_metric(logits):
        return (logits[:, -1, 3] - logits[:, -1, 4]).mean()

    batched = patch_grid(m, clean, corrupt, mean_metric, positions=[1, 2])
    rows = [
        patch_grid(m, clean[i : i + 1], corrupt[i : i + 1], mean_metric, positions=[1, 2])
        for i in range(2)
    ]
    torch.testing.assert_close(batched[:, 1:3], (rows[0] + rows[1])[:, 1:3] / 2)


def test_head_grid():
    m = model()
    base = float(metric(m(CLEAN)).detach())
    same = patch_head_grid(m, CLEAN, CLEAN, metric)
    torch.testing.assert_close(same, torch.full((2, 2), base), atol=1e-5, rtol=0)
    per_pos = patch_head_grid(m, CLEAN, CORRUPT, metric, per_position=True, positions=[1, -3])
    assert per_pos.shape == (2, 2, 5)
    assert (~per_pos.isnan()).nonzero()[:, 2].unique().tolist() == [1, 2]
    # Causal: heads before the changed token (position 2) see identical inputs in both runs.
    torch.testing.assert_close(per_pos[:, :, 1], torch.full((2, 2), base), atol=1e-5, rtol=0)
    assert (per_pos[:, :, 2] - base).abs().max() > 1e-4
    # One position patched jointly is the same cell as patched per position.
    whole = patch_head_grid(m, CLEAN, CORRUPT, metric, positions=[2], layers=[0])
    assert whole[1].isnan().all()
    torch.testing.assert_close(whole[0], per_pos[0, :, 2])


def test_grid_frame_is_long_and_drops_uncomputed_cells():
    m = model()
    grid = patch_grid(m, CLEAN, CORRUPT, metric, kind="attn_out", positions=[3, 4])
    frame = grid_frame(grid, "attn_out")
    assert list(frame.columns) == ["layer", "position", "kind", "value"]
    assert len(frame) == 4 and set(frame["position"]) == {3, 4}
    row = frame[(frame.layer == 1) & (frame.position == 4)].iloc[0]
    assert row.value == pytest.approx(float(grid[1, 4])) and row.kind == "attn_out"
    heads = patch_head_grid(m, CLEAN, CORRUPT, metric, per_position=True, positions=[4])
    hf = grid_frame(heads, "z", dims=("layer", "head", "position"))
    assert list(hf.columns) == ["layer", "head", "position", "kind", "value"] and len(hf) == 4
    with pytest.raises(ValueError, match="dimension names"):
        grid_frame(heads, "z")


def test_attention_to_span_reads_each_rows_last_token_under_right_padding():
    m = model()
    short = torch.tensor([[1, 2, 3]])
    padded = torch.tensor([[1, 2, 3, 0, 0]])
    span_short = torch.tensor([[True, False, False]])
    span_padded = torch.tensor([[True, False, False, False, False]])
    alone = attention_to_span(m, short, span_short)
    batched = attention_to_span(m, padded, span_padded, last=torch.tensor([2]))
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


def test_gradient_saliency_works_under_no_grad():
    """Saliency needs a backward pass: it must work when the caller disabled gradients."""
    from poser_lens.models.tiny import TinyConfig, build_native, wrap
    from poser_lens.models.tokenizer import build_tokenizer
    from poser_lens.patching import gradient_saliency

    tok = build_tokenizer(["a b c"])
    cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
    model = wrap(build_native(cfg, len(tok)), tok)
    with torch.no_grad():
        sal = gradient_saliency(model, torch.tensor([[1, 2, 3]]), lambda lg: lg[0, -1, 2])
    assert sal.shape == (1, 3) and bool(torch.isfinite(sal).all())
