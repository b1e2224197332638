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
