"""The fused attention path agrees with TransformerLens's eager one, and hooks still see it all."""

import pytest
import torch
from transformer_lens.model_bridge.sources.native.model import NativeAttention

from poser_lens.hooks import hook_name
from poser_lens.models.fused import FusedAttention, FusedAttentionBridge, eager, is_observed
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)


def _pair():
    tok = build_tokenizer(["a b c d e f"])
    fused = build_native(CFG, d_vocab=len(tok), seed=3)
    eager = build_native(CFG, d_vocab=len(tok), seed=3, fused=False)
    return tok, fused, eager


def _ids(tok, batch=3, seq=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(2, len(tok), (batch, seq), generator=gen)


def test_fused_is_default_and_keeps_the_weights():
    _, fused, eager = _pair()
    assert all(type(b.attn) is FusedAttention for b in fused.layers)
    assert all(type(b.attn) is NativeAttention for b in eager.layers)
    assert fused.state_dict().keys() == eager.state_dict().keys()
    for a, b in zip(fused.state_dict().values(), eager.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_native_forward_and_gradients_agree():
    tok, fused, eager = _pair()
    ids = _ids(tok)
    out_f, out_e = fused(ids), eager(ids)
    torch.testing.assert_close(out_f, out_e, atol=1e-5, rtol=1e-5)
    out_f.square().mean().backward()
    out_e.square().mean().backward()
    for (name, a), b in zip(fused.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kind", ["padding", "blocked rows"])
def test_masks_agree_including_queries_that_see_nothing(kind):
    tok, fused, eager = _pair()
    ids = _ids(tok, seq=7)
    if kind == "padding":  # left padding: the first queries of row 0 attend to nothing
        mask = torch.ones(3, 7, dtype=torch.long)
        mask[0, :3] = 0
    else:  # a 4-D boolean mask (True = blocked) with one fully blocked query row
        mask = torch.zeros(3, 1, 7, 7, dtype=torch.bool)
        mask[1, :, 4, :] = True
    out_f = fused(ids, attention_mask=mask)
    out_e = eager(ids, attention_mask=mask)
    assert torch.isfinite(out_f).all()
    torch.testing.assert_close(out_f, out_e, atol=1e-5, rtol=1e-5)
    out_f.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in fused.parameters() if p.grad is not None)


@pytest.mark.filterwarnings("ignore:run_with_cache. skipped")
def test_bridge_runs_fused_until_a_hook_reads_the_pattern(monkeypatch):
    tok, fused, eager = _pair()
    model, reference = wrap(fused, tok), wrap(eager, tok)
    ids = _ids(tok)
    calls = []
    original = NativeAttention.forward

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NativeAttention, "forward", counting)
    resid = [hook_name("resid_post", i, CFG.n_layers) for i in range(CFG.n_layers)]
    not_pattern = lambda name: "hook_pattern" not in name and "hook_attn_scores" not in name  # noqa: E731
    logits, cache = model.run_with_cache(ids, names_filter=not_pattern)
    assert calls == []  # no eager attention ran
    ref_logits, ref_cache = reference.run_with_cache(ids, names_filter=not_pattern)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert set(cache.keys()) == set(ref_cache.keys()) and set(resid) <= set(cache.keys())
    for name, value in cache.items():
        torch.testing.assert_close(value, ref_cache[name], atol=1e-5, rtol=1e-5, msg=name)

    for point in ("hook_pattern", "hook_attn_scores"):
        calls.clear()
        _, cache = model.run_with_cache(ids, names_filter=lambda n, p=point: n.endswith(p))
        assert calls == ["FusedAttention", "FusedAttention"]
        _, ref_cache = reference.run_with_cache(ids, names_filter=lambda n, p=point: n.endswith(p))
        assert set(cache.keys()) == set(ref_cache.keys()) and len(cache.keys()) == 2
        for name, value in cache.items():
            torch.testing.assert_close(value, ref_cache[name], atol=1e-6, rtol=1e-5)


def test_a_pattern_edit_still_reweights_the_output():
    tok, fused, _ = _pair()
    model = wrap(fused, tok)
    ids = _ids(tok)
    clean = model(ids)

    def uniform(pattern, hook):
        causal = pattern > 0
        return causal / causal.sum(-1, keepdim=True)

    name = "blocks.0.attn.hook_pattern"
    edited = model.run_with_hooks(ids, fwd_hooks=[(name, uniform)])
    assert not torch.allclose(edited, clean)
    torch.testing.assert_close(model(ids), clean)  # the hook came off: fused again, same result


def test_is_observed_sees_global_hooks():
    from transformer_lens.hook_points import HookPoint

    point = HookPoint()
    assert not is_observed(point)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert is_observed(point)
    finally:
        handle.remove()
    assert not is_observed(point) and is_observed(lambda x: x)


def test_a_copy_watches_its_own_hook_points(monkeypatch):
    """A deep copy's attention reads the copy's ``hook_attn_scores``, not the original's."""
    import copy

    tok, fused, _ = _pair()
    model = wrap(fused, tok)
    clone = copy.deepcopy(model)
    assert all(type(b.attn) is FusedAttentionBridge for b in clone.blocks)
    _, cache = clone.run_with_cache(_ids(tok), names_filter=lambda n: n.endswith("attn_scores"))
    assert len(cache.keys()) == CFG.n_layers
    calls = []
    original = NativeAttention.forward
    monkeypatch.setattr(
        NativeAttention, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    with clone.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", lambda act, hook: None)]):
        model(_ids(tok))  # the original is unhooked: fused throughout
    assert calls == []


def test_eager_restores_the_fused_path_after_an_error():
    _, fused, _ = _pair()
    with pytest.raises(RuntimeError, match="inside"), eager(fused):
        assert not any(b.attn.fusion for b in fused.layers)
        raise RuntimeError("inside")
    assert all(b.attn.fusion for b in fused.layers)
