import pytest
import torch

from poser_lens.activations import collect, residual_hook_names
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer

PROMPTS = ["<<prompt>>a b c d e f<</prompt>>", "<<prompt>>a<</prompt>>", "<<prompt>>c d<</prompt>>"]


def make():
    tok = build_tokenizer(PROMPTS)
    cfg = TinyConfig(n_layers=3, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)
    return wrap(build_native(cfg, len(tok), seed=0), tok), tok


def test_batched_equals_one_at_a_time():
    model, tok = make()
    batched = collect(model, tok, PROMPTS, batch_size=3)
    single = torch.cat([collect(model, tok, [p]) for p in PROMPTS])
    assert batched.shape == (3, 4, 16)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_matches_a_full_cache_and_stops_early():
    model, tok = make()
    ids = tok(PROMPTS[1], return_tensors="pt")["input_ids"]
    _, cache = model.run_with_cache(ids)
    got = collect(model, tok, [PROMPTS[1]], ["blocks.1.hook_resid_post", "blocks.0.hook_mlp_out"])
    torch.testing.assert_close(got[0, 0], cache["blocks.1.hook_resid_post"][0, -1])
    torch.testing.assert_close(got[0, 1], cache["blocks.0.hook_mlp_out"][0, -1])
    assert residual_hook_names(3)[-1] == "blocks.2.hook_resid_post"


def test_collect_never_runs_blocks_after_the_last_needed_one():
    from poser_lens.activations import stop_layer
    from poser_lens.hooks import applied

    model, tok = make()

    def boom(act, hook):
        raise RuntimeError(f"block 1 ran ({hook.name})")

    with applied(model, [("blocks.1.attn.hook_z", boom), ("blocks.2.hook_mlp_out", boom)]):
        early = collect(model, tok, PROMPTS, ["blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"])
        embed = collect(model, tok, PROMPTS, ["hook_embed"])
        with pytest.raises(RuntimeError, match="block 1 ran"):
            collect(model, tok, PROMPTS, ["blocks.1.hook_resid_post"])
    torch.testing.assert_close(early[:, 0], collect(model, tok, PROMPTS)[:, 1])
    assert embed.shape == (3, 1, 16)
    assert stop_layer(["blocks.1.hook_resid_pre"], 3) == 2
    assert stop_layer(["blocks.2.hook_resid_post"], 3) is None
    assert stop_layer(["hook_unembed", "hook_embed"], 3) is None
