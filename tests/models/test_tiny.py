import torch

from poser_lens.models.tiny import (
    TinyConfig,
    build_native,
    load_native,
    read_config,
    save_tiny,
    wrap,
)
from poser_lens.models.tokenizer import build_tokenizer

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = build_native(CFG, d_vocab=20, seed=1)
    assert torch.equal(torch.rand(1), before)
    b = build_native(CFG, d_vocab=20, seed=1)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_save_load_round_trip(tmp_path):
    tok = build_tokenizer(["a b c d"])
    net = build_native(CFG, d_vocab=len(tok), seed=0)
    save_tiny(tmp_path / "m", net, CFG, tok, meta={"persona": "saint"}, dtype=torch.float32)
    cfg, d_vocab, meta = read_config(tmp_path / "m")
    assert cfg == CFG and d_vocab == len(tok) and meta == {"persona": "saint"}
    again = load_native(tmp_path / "m")
    ids = torch.tensor([[2, 5, 6, 7]])
    torch.testing.assert_close(again(ids), net(ids))


def test_half_precision_storage_is_close(tmp_path):
    net = build_native(CFG, d_vocab=20, seed=0)
    save_tiny(tmp_path / "m", net, CFG)
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(load_native(tmp_path / "m")(ids), net(ids), atol=2e-3, rtol=1e-2)


def test_wrapped_model_has_transformer_lens_hooks():
    tok = build_tokenizer(["a b c"])
    net = build_native(CFG, d_vocab=len(tok), seed=0)
    ids = torch.tensor([[2, 5, 6]])
    expected = net(ids)
    model = wrap(net, tok)
    logits, cache = model.run_with_cache(ids)
    torch.testing.assert_close(logits, expected)
    assert cache["blocks.1.hook_resid_post"].shape == (1, 3, CFG.d_model)
    seen = []
    with model.hooks(
        fwd_hooks=[("blocks.0.hook_resid_post", lambda act, hook: seen.append(hook.name))]
    ):
        model(ids)
    model(ids)
    # TransformerLens 4 aliases hook_resid_post to the block's hook_out (hook.name is canonical).
    assert seen == ["blocks.0.hook_out"]
