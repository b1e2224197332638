"""What the fused kernels (``poser_lens.models.fused``) assume of TransformerLens and torch.

The tiny models' fused modules are built through TransformerLens's seams, not patched in:
``tiny.build_native`` gives the native model a ``FusedAttention`` per block (built like a
``NativeAttention``), and ``tiny.wrap`` passes ``fused.fuse_bridge`` to
``build_bridge_from_module`` as its ``post_adapter_hook``, which rebuilds the native adapter's
LayerNorm and attention templates as ``FusedNorm`` and ``FusedAttentionBridge``. Each test here
holds one assumption of that, so a TransformerLens (or torch) release that changes it fails here,
loudly, instead of moving numbers or quietly running the slow path. TransformerLens is pinned to
one minor version in ``pyproject.toml``; widen the pin once these pass on the next.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

from poser_lens.models.fused import (
    Fusable,
    FusedAttention,
    FusedAttentionBridge,
    FusedNorm,
    eager,
    fusables,
    fuse_bridge,
)
from poser_lens.models.fused.attention import _blocked_by
from poser_lens.models.fused.base import GLOBAL_HOOK_REGISTRIES, MODULE_HOOK_REGISTRIES
from poser_lens.models.tiny import TinyConfig, bridge_config, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)


def seam(assumption: str) -> str:
    return f"TL seam: {assumption} (poser_lens.models.fused relies on it)"


def _params(fn: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _settings(component: nn.Module) -> dict[str, Any]:
    """The plain settings a bridge component keeps (flags, names, numbers)."""
    plain = (bool, int, float, str, type(None))
    return {k: v for k, v in vars(component).items() if isinstance(v, plain)}


def test_build_bridge_from_module_is_public_and_takes_a_post_adapter_hook():
    from transformer_lens.model_bridge import sources

    assert "build_bridge_from_module" in sources.__all__, seam("build_bridge_from_module exported")
    params = _params(sources.build_bridge_from_module)
    assert {"model", "architecture", "tl_config", "tokenizer", "model_name"} <= set(params)
    assert "post_adapter_hook" in params, seam("build_bridge_from_module(post_adapter_hook=...)")
    assert params["post_adapter_hook"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("norm", ["LN", "RMS", "LNPre"])
def test_the_native_adapter_builds_from_the_templates_fuse_bridge_replaces(norm):
    """The templates the adapter hands the hook are the plain classes, with default settings
    (so the fused ones, made from name, config and submodules, drop none of them)."""
    from transformer_lens.model_bridge import AttentionBridge, NormalizationBridge
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    from poser_lens.models.tiny import TinyConfig

    cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, normalization_type=norm)
    net = build_native(cfg, d_vocab=10)
    seen: dict[str, Any] = {}

    def spy(adapter: Any) -> None:
        blocks = adapter.component_mapping["blocks"]
        seen.update(attn=blocks.submodules["attn"], ln1=blocks.submodules["ln1"])
        seen["ln_final"] = adapter.component_mapping["ln_final"]
        fuse_bridge(adapter)
        seen["fused_attn"] = blocks.submodules["attn"]
        seen["fused_ln1"] = blocks.submodules["ln1"]

    build_bridge_from_module(
        net, "TransformerLensNative", tl_config=net.cfg, post_adapter_hook=spy, model_name="t"
    )
    attn = seen["attn"]
    assert type(attn) is AttentionBridge, seam("the native adapter's attention is AttentionBridge")
    fresh = AttentionBridge(attn.name, attn.config, submodules=attn.submodules)
    assert _settings(attn) == _settings(fresh), seam("its attention template has default settings")
    assert type(seen["fused_attn"]) is FusedAttentionBridge
    assert _settings(seen["fused_attn"]) == _settings(attn)
    assert seen["fused_attn"].submodules is attn.submodules
    if norm == "LN":
        for key in ("ln1", "ln_final"):
            ln = seen[key]
            assert type(ln) is NormalizationBridge, seam(f"the adapter's LN {key} template")
            fresh_ln = NormalizationBridge(ln.name, ln.config, submodules=ln.submodules)
            assert _settings(ln) == _settings(fresh_ln), seam(f"{key} has default settings")
        assert type(seen["fused_ln1"]) is FusedNorm
        settings = _settings(seen["fused_ln1"])
        assert settings.pop("fusion") is True and settings == _settings(seen["ln1"])
    else:  # RMS and parameter-free norms keep their own bridges
        assert type(seen["fused_ln1"]) is type(seen["ln1"]) is not NormalizationBridge


def test_native_attention_is_built_as_fused_attention_builds_it():
    from transformer_lens.model_bridge.sources.native import NativeAttention, NativeModel

    assert issubclass(FusedAttention, NativeAttention)
    assert list(_params(NativeAttention.__init__))[:3] == ["self", "cfg", "rotary"], seam(
        "NativeAttention(cfg, rotary=...)"
    )
    forward = _params(NativeAttention.forward)
    assert list(forward)[:5] == [
        "self",
        "hidden_states",
        "attention_mask",
        "position_ids",
        "pattern_fn",
    ], seam("NativeAttention.forward's arguments")
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in forward.values()), seam(
        "NativeAttention.forward takes (and ignores) further keywords"
    )
    assert NativeAttention.accepts_pattern_fn is True, seam("the bridge passes hook_pattern in")
    net = NativeModel(bridge_config(CFG, d_vocab=10, seed=0))
    attn = net.layers[0].attn
    for name in (
        "cfg",
        "rotary",
        "kv_repeats",
        "attn_scores_soft_cap",
        "causal",
        "causal_mask",
        "scale",
        "n_heads",
        "d_head",
        "q",
        "k",
        "v",
        "o",
    ):
        assert hasattr(attn, name), seam(f"NativeAttention.{name}")
    fused = FusedAttention.like(attn)
    assert fused.state_dict().keys() == attn.state_dict().keys()
    assert all(
        torch.equal(a, b)
        for a, b in zip(fused.state_dict().values(), attn.state_dict().values(), strict=True)
    )
    assert torch.equal(fused.causal_mask, attn.causal_mask) and fused.scale == attn.scale


def test_fused_attention_draws_nothing_from_the_callers_stream():
    from transformer_lens.model_bridge.sources.native import NativeModel

    net = NativeModel(bridge_config(CFG, d_vocab=10, seed=0))
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    FusedAttention.like(net.layers[0].attn)
    assert torch.equal(torch.rand(3), want)


def test_initialisation_ignores_the_attention_swap():
    """``initialize_native_model`` draws from its own generator, seeded by ``cfg.seed``, so a
    model built with fused attention has the weights of one built without."""
    from transformer_lens.model_bridge.sources.native import initialize_native_model

    assert "seed" in _params(initialize_native_model), seam("initialize_native_model(seed=...)")
    fused, plain = build_native(CFG, 10, seed=4), build_native(CFG, 10, seed=4, fused=False)
    for (name, a), b in zip(fused.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), seam(f"seeded initialisation of {name}")


@pytest.mark.parametrize("kind", ["2-D padding", "4-D bool", "4-D additive"])
def test_the_fused_mask_reading_is_the_native_attentions(kind):
    from transformer_lens.model_bridge.sources.native import NativeAttention

    gen = torch.Generator().manual_seed(0)
    if kind == "2-D padding":
        mask = (torch.rand(3, 7, generator=gen) > 0.3).long()
    elif kind == "4-D bool":
        mask = torch.rand(3, 1, 7, 7, generator=gen) > 0.7
    else:
        mask = torch.where(torch.rand(3, 1, 7, 7, generator=gen) > 0.7, -1e9, -0.5)
    causal = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    want = NativeAttention._combine_attention_mask(causal, mask, batch=3)
    assert torch.equal(causal | _blocked_by(mask), want), seam(f"the {kind} attention mask")


def test_the_attention_bridge_passes_keywords_through_to_the_attention(monkeypatch):
    """``FusedAttentionBridge`` tells its attention ``scores_read`` by a keyword that
    ``AttentionBridge.forward`` hands on unchanged."""
    from transformer_lens.model_bridge import AttentionBridge

    assert _params(AttentionBridge.forward).keys() == {"self", "args", "kwargs"}
    tok = build_tokenizer(["a b c"])
    model = wrap(build_native(CFG, len(tok), seed=1), tok)
    seen: list[bool] = []
    forward = FusedAttention.forward

    def spy(self: Any, *args: Any, scores_read: bool = False, **kwargs: Any) -> Any:
        seen.append(scores_read)
        return forward(self, *args, scores_read=scores_read, **kwargs)

    monkeypatch.setattr(FusedAttention, "forward", spy)
    ids = torch.tensor([[1, 2, 3]])
    model(ids)
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_attn_scores", lambda act, hook: None)]):
        model(ids)
    assert seen == [False, False, False, True], seam("keywords reach the wrapped attention")


def test_the_bridge_norm_calls_the_fused_norm_relies_on():
    from transformer_lens.model_bridge import NormalizationBridge

    init = _params(NormalizationBridge.__init__)
    assert {"name", "config", "submodules", "use_native_layernorm_autograd", "optional"} <= set(
        init
    ), seam("NormalizationBridge's constructor")
    assert list(_params(NormalizationBridge.forward))[:2] == ["self", "hidden_states"]
    norm = NormalizationBridge("ln", bridge_config(CFG, d_vocab=10))
    norm.set_original_component(nn.LayerNorm(CFG.d_model))
    for name in (
        "hook_in",
        "hook_scale",
        "hook_normalized",
        "hook_out",
        "weight",
        "uses_rms_norm",
        "uses_weight_offset",
        "use_native_layernorm_autograd",
    ):
        assert hasattr(norm, name), seam(f"NormalizationBridge.{name}")


def test_torch_keeps_the_hook_registries_is_observed_reads():
    from torch.nn.modules import module as torch_module

    for name in GLOBAL_HOOK_REGISTRIES:
        assert isinstance(getattr(torch_module, name, None), dict), f"torch: module.{name}"
    for name in MODULE_HOOK_REGISTRIES:
        assert isinstance(getattr(nn.Identity(), name, None), dict), f"torch: Module.{name}"


def test_eager_switches_the_fusable_modules_of_a_wrapped_model_and_no_wrapper():
    tok = build_tokenizer(["a b c"])
    model = wrap(build_native(CFG, len(tok), seed=1), tok)
    modules = fusables(model)
    kinds = [type(m).fuses for m in modules]
    assert kinds.count("attention") == CFG.n_layers and kinds.count("norm") == 2 * CFG.n_layers + 1
    assert all(isinstance(m, Fusable) for m in modules)
    assert not any(isinstance(m, FusedAttentionBridge) for m in modules)
    with eager(model, norms=False):
        assert [m.fusion for m in modules] == [k == "norm" for k in kinds]
        with eager(model):
            assert not any(m.fusion for m in modules)
        assert [m.fusion for m in modules] == [k == "norm" for k in kinds]
    assert all(m.fusion for m in modules)
