import pytest
import torch

from poser_lens.activations import collect, last_token_reads, residual_hook_names
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


def test_collect_stops_after_the_last_residual_and_equals_a_full_forward():
    """Reading every residual runs neither the final norm nor the unembedding, and the rows
    are exactly a full cached forward's of the same batch (one that caches the residuals: a
    cache of the attention patterns would run the eager attention, equal only up to float
    rounding, tests/models/test_attention.py)."""
    from poser_lens.hooks import applied
    from poser_lens.readout import encode

    model, tok = make()

    def boom(act, hook):
        raise RuntimeError(f"{hook.name} ran")

    ids, last = encode(tok, sorted(PROMPTS, key=len))  # collect's one batch, sorted by length
    _, cache = model.run_with_cache(ids, names_filter=residual_hook_names(3))
    rows = torch.arange(len(PROMPTS))
    full = torch.stack([cache[n][rows, last] for n in residual_hook_names(3)], dim=1)
    with applied(model, [("ln_final.hook_normalized", boom), ("unembed.hook_in", boom)]):
        got = collect(model, tok, sorted(PROMPTS, key=len), batch_size=3)
        with pytest.raises(RuntimeError, match="ran"):
            model(ids)
    assert torch.equal(got, full)
    assert not model.hook_dict["blocks.2.hook_resid_post"].fwd_hooks  # its reader taken off
    with pytest.raises(ValueError, match="never fired"):
        last_token_reads(model, ids, last, ["blocks.0.hook_resid_post"], stop_at_layer=0)
