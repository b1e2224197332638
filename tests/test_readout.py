from pathlib import Path

import pytest
import torch

from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.readout import (
    AnswerIds,
    answer_probs,
    answer_readout,
    encode,
    last_logits,
    last_token_logits,
    model_kind,
    token_ids,
)


def test_ids_come_from_the_tokenizer():
    tok = build_tokenizer(["x"])
    ids = AnswerIds.from_tokenizer(tok)
    assert ids.of("A") == tok.convert_tokens_to_ids("A")
    assert len({ids.a, ids.b, ids.error}) == 3


def test_probabilities_and_misaligned():
    ids = AnswerIds(a=0, b=1, error=2)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05]]))
    r = answer_readout(logits, ids, aligned=["A", "A"])
    torch.testing.assert_close(r.p_misaligned, torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(r.mass_ab, torch.tensor([0.9, 0.9]))
    assert answer_readout(logits, ids).p_misaligned is None
    with pytest.raises(ValueError):
        answer_readout(logits, ids, aligned=["A"])
    with pytest.raises(ValueError):
        answer_readout(logits, ids, aligned=["A", "error"])


# ----------------------------------------------------------------------------- the one readout

CFG = TinyConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64)
TEXTS = [
    "<<prompt>>red apple<</prompt>>",
    "<<prompt>>a long green pear here<</prompt>>",
    "<<prompt>>x<</prompt>>",
]


def _tiny():
    tok = build_tokenizer(TEXTS)
    return build_native(CFG, len(tok), seed=0), tok


def _toy_llama(d_vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=d_vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def test_encode_pads_right_and_finds_each_last_token():
    tok = build_tokenizer(TEXTS)
    ids, last = encode(tok, TEXTS)
    assert ids.shape[1] == int(last.max()) + 1
    for row, text in enumerate(TEXTS):
        own = tok(text)["input_ids"]
        assert int(last[row]) == len(own) - 1
        assert ids[row, : len(own)].tolist() == own
    _, bare_last = encode(tok, TEXTS[:1], add_special_tokens=False)
    assert int(bare_last[0]) == int(last[0]) - 1  # no BOS


def test_encode_equals_the_tokenizers_own_padded_batch_and_tokenises_each_text_once(monkeypatch):
    tok = build_tokenizer(TEXTS)
    texts = [*TEXTS, TEXTS[0], ""]
    for special in (True, False):
        own = tok(
            texts,
            padding=True,
            return_tensors="pt",
            padding_side="right",
            add_special_tokens=special,
        )
        ids, last = encode(tok, texts, add_special_tokens=special)
        assert torch.equal(ids, own["input_ids"])
        assert torch.equal(last, own["attention_mask"].sum(1) - 1)
    calls = []
    original = type(tok).__call__
    monkeypatch.setattr(
        type(tok),
        "__call__",
        lambda self, t, **kw: calls.append(list(t)) or original(self, t, **kw),
    )
    encode(tok, texts)
    assert not calls  # all memoised
    encode(tok, ["a new text", TEXTS[1], "a new text"])
    assert calls == [["a new text"]]  # only the new text, once
    tok.add_tokens(["zzz"])  # a changed vocabulary tokenises afresh
    assert token_ids(tok, ["zzz"])[0].tolist() == original(tok, "zzz")["input_ids"]


def test_encode_of_no_texts_is_empty_and_without_a_pad_token_the_tokenizers_error():
    tok = build_tokenizer(TEXTS)
    ids, last = encode(tok, [])
    assert ids.shape == (0, 0) and last.shape == (0,)
    tok.pad_token = None
    with pytest.raises(ValueError, match="pad"):
        encode(tok, TEXTS)


def test_native_bridge_batched_and_unbatched_agree():
    """One readout: a native module, its bridge wrapping, in a batch and one at a time."""
    net, tok = _tiny()
    ids, last = encode(tok, TEXTS)
    with torch.no_grad():
        full = net(ids)[torch.arange(len(TEXTS)), last]
        native = last_logits(net, ids, last)
        bridge = last_logits(wrap(net, tok), ids, last)
    torch.testing.assert_close(native, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bridge, native, atol=1e-5, rtol=1e-4)
    model = wrap(net, tok)
    assert (model_kind(net), model_kind(model)) == ("native", "bridge")
    for m in (net, model):
        batched = last_token_logits(m, tok, TEXTS)
        single = torch.cat([last_token_logits(m, tok, [t]) for t in TEXTS])
        assert batched.dtype == torch.float32 and batched.device.type == "cpu"
        torch.testing.assert_close(batched, native, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(single, native, atol=1e-5, rtol=1e-4)


def test_hf_and_peft_paths_agree_with_the_full_forward():
    tok = build_tokenizer(TEXTS)
    hf = _toy_llama(len(tok))
    ids, last = encode(tok, TEXTS)
    with torch.no_grad():
        full = torch.stack(
            [hf(ids[i : i + 1, : int(last[i]) + 1]).logits[0, -1] for i in range(len(TEXTS))]
        )
        plain = last_logits(hf, ids, last)
        masked = last_logits(hf, ids, last, padding_mask=True)
    assert model_kind(hf) == "hf"
    torch.testing.assert_close(plain, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masked, full, atol=1e-5, rtol=1e-4)
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(hf, LoraConfig(r=2, target_modules=["q_proj"]))
    assert model_kind(wrapped) == "hf"
    with torch.no_grad():
        torch.testing.assert_close(last_logits(wrapped, ids, last), full, atol=1e-5, rtol=1e-4)
    probs = answer_probs(wrapped, tok, TEXTS, batch_size=2, by_length=False, columns=[4, 5])
    torch.testing.assert_close(probs, full.softmax(-1)[:, [4, 5]], atol=1e-5, rtol=1e-4)


def test_answer_probs_batched_equals_one_at_a_time():
    net, tok = _tiny()
    batched = answer_probs(net, tok, TEXTS)
    single = torch.cat([answer_probs(net, tok, [t]) for t in TEXTS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    unsorted = answer_probs(net, tok, TEXTS, batch_size=2, by_length=False)
    torch.testing.assert_close(unsorted, batched, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched.sum(-1), torch.ones(len(TEXTS)))
    ids = AnswerIds.from_tokenizer(tok)
    cols = answer_probs(net, tok, TEXTS, columns=[ids.a, ids.b, ids.error])
    torch.testing.assert_close(cols, batched[:, [ids.a, ids.b, ids.error]])


def test_hooks_act_per_row_and_need_a_bridge():
    net, tok = _tiny()
    model = wrap(net, tok)

    def zero_last(last):
        def hook(act, hook):
            act = act.clone()
            act[torch.arange(len(last)), last] = 0.0
            return act

        return [("blocks.1.hook_resid_post", hook)]

    hooked = last_token_logits(model, tok, TEXTS, hooks=zero_last, batch_size=2)
    ref = model.unembed(model.ln_final(torch.zeros(1, 1, CFG.d_model)))[0, 0]
    torch.testing.assert_close(hooked, ref.expand(len(TEXTS), -1), atol=1e-5, rtol=1e-4)
    ids, last = encode(tok, TEXTS)
    with pytest.raises(ValueError, match="hooks need"):
        last_logits(net, ids, last, hooks=zero_last(last))
    with pytest.raises(ValueError, match="padding_mask"):
        last_logits(model, ids, last, padding_mask=True)
    with pytest.raises(TypeError):
        model_kind(torch.nn.Linear(2, 2))


def test_no_prompts_give_empty_rows():
    net, tok = _tiny()
    assert tuple(last_token_logits(wrap(net, tok), tok, []).shape) == (0, len(tok))
    assert tuple(answer_probs(net, tok, []).shape) == (0, len(tok))
    assert tuple(answer_probs(net, tok, [], columns=[1, 2, 3]).shape) == (0, 3)


def test_readout_sits_below_the_models_layer():
    import ast

    import poser_lens.readout as readout

    tree = ast.parse(Path(readout.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [m for m in imported if m and m.startswith("poser_lens.models")]
