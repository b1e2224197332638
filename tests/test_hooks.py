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
    # Without the depth only a block index is accepted, as it is.
    assert hook_name("ln2_normalized", 7) == "blocks.7.ln2.hook_normalized"
    for layer in (0.5, -1, True):
        with pytest.raises(ValueError, match="needs n_layers"):
            hook_name("resid_post", layer)


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


def test_patch_one_vector_per_row_at_each_rows_last_token():
    # A source with a position axis of size 1 patches runs of other lengths: row i's vector
    # goes to row i's own last position only, and the input is not modified in place.
    act = torch.zeros(2, 4, 3)
    source = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])[:, None]
    out = Patch(source, positions="last", last=torch.tensor([3, 1]))(act, None)
    assert out.sum(-1).tolist() == [[0, 0, 0, 3], [0, 6, 0, 0]]
    assert act.sum() == 0
    with pytest.raises(ValueError, match="neither"):
        Patch(torch.zeros(2, 2, 3), positions="last")(act, None)  # neither 4 positions nor 1


def test_patching_a_whole_run_reproduces_it(model):
    store: dict = {}
    other = torch.tensor([[9, 9, 9, 9], [3, 3, 3, 3]])
    with applied(model, [(NAME, Record(store, key="x"))]):
        target = model(other)
    with applied(model, [(NAME, Patch(store["x"]))]):
        patched = model(TOKENS)
    # Position-wise patching of the whole residual stream reproduces the other run.
    torch.testing.assert_close(patched[:, -1], target[:, -1], atol=1e-5, rtol=1e-4)


# --- token spans of facts -------------------------------------------------------------------


def scenarios(n=4, seed=0):
    import random

    from poser_lens.data.generator import make_scenario

    rng = random.Random(seed)
    levels = ["good", "poor", "neutral", "poor"]
    return [
        make_scenario(rng, "truth_and_reward", complexity=1, level=levels[i % 4])[0]
        for i in range(n)
    ]


class OffsetlessTokenizer:
    """A tokenizer that cannot return offsets (as a slow Hugging Face tokenizer)."""

    is_fast = False

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, *args, **kwargs):
        assert "return_offsets_mapping" not in kwargs
        return self.inner(*args, **kwargs)


def test_span_mask_covers_exactly_the_fact_tokens():
    from poser_lens.data.prompts import fact_char_spans
    from poser_lens.hooks import span_mask
    from poser_lens.models.tokenizer import build_tokenizer, words
    from poser_lens.readout import encode

    items = scenarios()
    prompts = [s.prompt for s in items]
    tok = build_tokenizer(prompts)
    ids, last = encode(tok, prompts)
    assert len(set(last.tolist())) > 1  # unequal lengths: padding matters
    for fact in range(2):
        spans = [[fact_char_spans(s)[fact]] for s in items]
        mask = span_mask(tok, prompts, spans)
        assert mask.shape == ids.shape
        for row, s in enumerate(items):
            covered = tok.convert_ids_to_tokens(ids[row][mask[row]].tolist())
            assert covered == words(s.facts[fact].content)
            assert "".join(covered) == s.facts[fact].content.replace(" ", "")
            assert not mask[row, int(last[row]) + 1 :].any()  # never on padding
            assert not mask[row, 0]  # never on BOS
    all_facts = span_mask(tok, prompts, [fact_char_spans(s) for s in items])
    n_words = [sum(len(words(f.content)) for f in s.facts) for s in items]
    assert all_facts.sum(1).tolist() == n_words


@pytest.mark.parametrize("side", ["right", "left"])
def test_span_mask_without_offsets_agrees(side):
    from poser_lens.data.prompts import fact_char_spans
    from poser_lens.hooks import span_mask
    from poser_lens.models.tokenizer import build_tokenizer

    items = scenarios(seed=1)
    prompts = [s.prompt for s in items]
    tok = build_tokenizer(prompts)
    spans = [fact_char_spans(s)[::2] for s in items]
    exact = span_mask(tok, prompts, spans, padding_side=side)
    counted = span_mask(OffsetlessTokenizer(tok), prompts, spans, padding_side=side)
    assert exact.any()
    assert torch.equal(exact, counted)
    ids = tok(prompts, padding=True, return_tensors="pt", padding_side=side)["input_ids"]
    assert (ids[exact] != tok.pad_token_id).all()


def test_span_mask_rejects_bad_spans_and_selects_positions():
    from poser_lens.hooks import span_mask
    from poser_lens.models.tokenizer import build_tokenizer

    tok = build_tokenizer(["a b c"])
    with pytest.raises(ValueError, match="outside"):
        span_mask(tok, ["a b"], [[(0, 9)]])
    with pytest.raises(ValueError, match="span lists"):
        span_mask(tok, ["a b"], [])
    mask = span_mask(tok, ["a b c", "a"], [[(2, 3)], []])
    assert mask.int().tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]
    assert span_mask(tok, ["a b"], [[(1, 1)]]).sum() == 0  # an empty span selects nothing
    act = torch.zeros(2, 4, 3)
    steered = AddVector(torch.ones(3), positions=mask)(act, None)
    assert steered.sum(-1).tolist() == [[0, 0, 3, 0], [0, 0, 0, 0]]


def test_patch_selected_heads(model):
    z_name, out_name = "blocks.1.attn.hook_z", "blocks.1.hook_attn_out"
    other = torch.tensor([[9, 9, 9, 9], [3, 3, 3, 3]])
    store: dict = {}
    with applied(model, [(z_name, Record(store, key="z")), (out_name, Record(store, key="o"))]):
        model(other)
    with applied(model, [(z_name, Patch(store["z"], heads=[0, 1]))]):
        all_heads = model(TOKENS)
    with applied(model, [(out_name, Patch(store["o"]))]):
        attn_out = model(TOKENS)
    torch.testing.assert_close(all_heads, attn_out, atol=1e-5, rtol=1e-4)
    with applied(model, [(z_name, Patch(store["z"], heads=[0]))]):
        one_head = model(TOKENS)
    assert not torch.allclose(one_head, all_heads) and not torch.allclose(one_head, model(TOKENS))
    with pytest.raises(ValueError, match="per-head"):
        Patch(torch.zeros(2, 3, 4), heads=[0])(torch.zeros(2, 3, 4), None)
