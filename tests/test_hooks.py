import pytest
import torch

from poser_lens.hooks import (
    Ablate,
    AddNoise,
    AddVector,
    Patch,
    Record,
    applied,
    draw_noise,
    hook_name,
    position_mask,
    resolve_layer,
)
from poser_lens.models.tiny import TinyConfig, build_native, wrap

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16)
NAME = "blocks.0.hook_resid_post"


@pytest.fixture
def model():
    return wrap(build_native(CFG, d_vocab=20, seed=0))


TOKENS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])


def test_layer_specs():
    assert resolve_layer(40, 15 / 40) == 15
    assert resolve_layer(2, 1.0) == 1
    assert hook_name("mlp_out", 5, 40) == "blocks.5.hook_mlp_out"
    with pytest.raises(ValueError):
        resolve_layer(2, 2)
    with pytest.raises(ValueError):
        resolve_layer(2, 1.5)
    with pytest.raises(ValueError, match="unknown hook kind"):
        hook_name("resid", 0, 2)


def test_position_masks():
    assert position_mask("all", 1, 2).all()
    assert position_mask([0, -1], 1, 3).int().tolist() == [[1, 0, 1]]
    assert position_mask("last", 1, 3).int().tolist() == [[0, 0, 1]]


def test_hooks_come_off_after_exception_and_nest(model):
    clean = model(TOKENS)
    with pytest.raises(RuntimeError), applied(model, [(NAME, AddVector(torch.ones(16), 5.0))]):
        raise RuntimeError("boom")
    torch.testing.assert_close(model(TOKENS), clean)
    seen: dict = {}
    with applied(model, [(NAME, AddVector(torch.ones(16), 5.0))]):
        steered = model(TOKENS)
        with applied(model, [(NAME, Record(seen, key="inner"))]):
            model(TOKENS)
        torch.testing.assert_close(model(TOKENS), steered)  # inner exit kept the outer hook
    torch.testing.assert_close(model(TOKENS), clean)
    assert seen["inner"].shape == (2, 4, 16)


def test_seeded_noise_has_the_requested_norm():
    a, b = draw_noise(16, "uniform", seed=3), draw_noise(16, "uniform", seed=3)
    assert torch.equal(a, b) and not torch.equal(a, draw_noise(16, "uniform", seed=4))
    act = torch.randn(2, 4, 16)
    out = AddNoise(d=16, kind="gaussian", norm=7.0, seed=1)(act, None)
    delta = out - act
    torch.testing.assert_close(delta[:, -1].norm(dim=-1), torch.full((2,), 7.0))
    assert delta[:, :-1].abs().max() == 0
    rel = AddNoise(d=16, relative=0.5, positions="all")(act, None) - act
    torch.testing.assert_close(rel.norm(dim=-1), 0.5 * act.norm(dim=-1))


def test_ablation_and_patching():
    act = torch.randn(2, 3, 4)
    assert Ablate("zero")(act, None).abs().max() == 0
    u = torch.tensor([1.0, 0, 0, 0])
    assert Ablate("direction", direction=u)(act, None)[..., 0].abs().max() < 1e-6
    src = torch.randn(2, 3, 4)
    torch.testing.assert_close(Patch(src)(act, None), src)
    torch.testing.assert_close(Patch(act)(act, None), act)
    with pytest.raises(ValueError):
        Patch(torch.zeros(1, 3, 4))(act, None)


def test_patching_a_whole_run_reproduces_it(model):
    store: dict = {}
    other = torch.tensor([[9, 9, 9, 9], [3, 3, 3, 3]])
    with applied(model, [(NAME, Record(store, key="x"))]):
        target = model(other)
    with applied(model, [(NAME, Patch(store["x"]))]):
        patched = model(TOKENS)
    # Position-wise patching of the whole residual stream reproduces the other run.
    torch.testing.assert_close(patched[:, -1], target[:, -1], atol=1e-5, rtol=1e-4)
