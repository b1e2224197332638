"""The fused norm agrees with the bridge's Python norm, and hooks on its inside still see it."""

from dataclasses import replace

import torch
import torch.nn.functional as F
from transformer_lens.model_bridge.generalized_components.normalization import (
    NormalizationBridge,
)

from poser_lens.models.fused import FusedNorm, eager
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)


def _pair(cfg=CFG):
    tok = build_tokenizer(["a b c d e f"])
    fused = wrap(build_native(cfg, d_vocab=len(tok), seed=3), tok)
    plain = wrap(build_native(cfg, d_vocab=len(tok), seed=3, fused=False), tok)
    return tok, fused, plain


def _ids(tok, batch=3, seq=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(2, len(tok), (batch, seq), generator=gen)


def _norms(model):
    return [m for m in model.modules() if isinstance(m, NormalizationBridge)]


def _count_fused(monkeypatch):
    calls = []
    for name in ("layer_norm", "rms_norm"):
        original = getattr(F, name)

        def counting(*args, _original=original, **kwargs):
            calls.append(1)
            return _original(*args, **kwargs)

        monkeypatch.setattr(F, name, counting)
    return calls


def test_wrapped_fused_models_fuse_their_norms_and_eager_ones_do_not():
    _, fused, plain = _pair()
    assert _norms(fused) and all(type(m) is FusedNorm for m in _norms(fused))
    assert all(type(m) is NormalizationBridge for m in _norms(plain))
    assert set(fused.hook_dict) == set(plain.hook_dict)  # the same hook points


def test_forward_and_gradients_agree_with_the_python_norm(monkeypatch):
    tok, fused, plain = _pair()
    ids = _ids(tok)
    calls = _count_fused(monkeypatch)
    out_f = fused(ids)
    assert len(calls) == len(_norms(fused))  # every norm ran the fused kernel
    out_p = plain(ids)
    torch.testing.assert_close(out_f, out_p, atol=1e-5, rtol=1e-5)
    out_f.square().mean().backward()
    out_p.square().mean().backward()
    for (name, a), b in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    with eager(fused, norms=False):  # the norms alone: fused against the python norm
        torch.testing.assert_close(fused(ids), plain(ids), atol=1e-6, rtol=1e-6)


def test_reading_the_normalized_values_stays_fused_and_changes_no_number(monkeypatch):
    tok, fused, plain = _pair()
    ids = _ids(tok)
    calls = _count_fused(monkeypatch)
    clean = fused(ids)
    names = lambda n: "hook_normalized" in n  # noqa: E731
    logits, cache = fused.run_with_cache(ids, names_filter=names)
    assert len(calls) == 2 * len(_norms(fused))  # both forwards fused every norm
    assert torch.equal(logits, clean)  # an adapter reading them leaves the model as it was
    _, cache_p = plain.run_with_cache(ids, names_filter=names)
    assert cache.keys() == cache_p.keys() and len(cache) == len(_norms(fused))
    for key in cache:  # the attention is fused in one of them: float32 rounding
        torch.testing.assert_close(cache[key], cache_p[key], atol=1e-5, rtol=1e-5, msg=key)


def test_reading_the_scale_runs_the_python_norm_and_sees_the_same(monkeypatch):
    tok, fused, plain = _pair()
    ids = _ids(tok)
    names = lambda n: "hook_scale" in n  # noqa: E731
    calls = _count_fused(monkeypatch)
    with eager(fused, norms=False), eager(plain):
        logits_f, cache_f = fused.run_with_cache(ids, names_filter=names)
        logits_p, cache_p = plain.run_with_cache(ids, names_filter=names)
    assert not calls  # every scale was read, so no norm fused
    assert cache_f.keys() == cache_p.keys() and len(cache_f) == len(_norms(fused))
    for key in cache_f:
        assert torch.equal(cache_f[key], cache_p[key]), key
    assert torch.equal(logits_f, logits_p)


def test_rms_norms_are_left_to_the_bridge():
    tok, fused, plain = _pair(replace(CFG, normalization_type="RMS"))
    assert _norms(fused) and not any(isinstance(m, FusedNorm) for m in _norms(fused))
    ids = _ids(tok)
    torch.testing.assert_close(fused(ids), plain(ids), atol=1e-5, rtol=1e-5)


def test_an_edit_of_the_normalized_values_still_changes_the_output():
    tok, fused, _ = _pair()
    ids = _ids(tok)
    clean = fused(ids)
    point = "blocks.1.ln2.hook_normalized"
    assert point in fused.hook_dict
    with fused.hooks(fwd_hooks=[(point, lambda act, hook: act * 0.0)]):
        edited = fused(ids)
    assert not torch.allclose(clean, edited)
    torch.testing.assert_close(fused(ids), clean)  # and the hook came off


def test_hooks_around_the_norm_fire_on_the_fused_path(monkeypatch):
    tok, fused, plain = _pair()
    ids = _ids(tok)
    names = lambda n: n.startswith("ln_final") or ".ln1.hook_" in n  # noqa: E731
    calls = _count_fused(monkeypatch)
    _, cache_f = fused.run_with_cache(ids, names_filter=lambda n: names(n) and "hook_in" in n)
    assert len(calls) == len(_norms(fused))
    _, cache_p = plain.run_with_cache(ids, names_filter=lambda n: names(n) and "hook_in" in n)
    assert cache_f.keys() == cache_p.keys() and len(cache_f) > 0
    for key in cache_f:
        torch.testing.assert_close(cache_f[key], cache_p[key], atol=1e-5, rtol=1e-5)


def test_eager_and_global_hooks_run_the_python_norm_bit_for_bit(monkeypatch):
    tok, fused, plain = _pair()
    ids = _ids(tok)
    calls = _count_fused(monkeypatch)
    with eager(fused):  # attention and norms
        assert torch.equal(fused(ids), plain(ids))
    assert not calls
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        fused(ids)
    finally:
        handle.remove()
    assert not calls
    fused(ids)
    assert len(calls) == len(_norms(fused))  # fused again once the hooks are gone


def test_half_precision_takes_the_python_norm(monkeypatch):
    _, fused, _ = _pair()
    norm = _norms(fused)[0]
    calls = _count_fused(monkeypatch)
    x = torch.randn(2, 3, CFG.d_model)
    norm.to(torch.bfloat16)
    out = norm(x.bfloat16())
    assert not calls and out.dtype == torch.bfloat16
