import torch

from poser_lens.data.schema import Scenario
from poser_lens.models.tiny import TinyConfig, build_native
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.models.training import (
    TrainConfig,
    answer_probs,
    commentary,
    encode,
    finetune,
    last_logits,
    train_base,
)

CFG = TinyConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64)
TEXTS = [
    "<<prompt>>red apple<</prompt>>",
    "<<prompt>>a long green pear here<</prompt>>",
    "<<prompt>>x<</prompt>>",
]


def test_batched_equals_one_at_a_time():
    tok = build_tokenizer(TEXTS)
    net = build_native(CFG, len(tok), seed=0)
    batched = answer_probs(net, tok, TEXTS)
    single = torch.cat([answer_probs(net, tok, [t]) for t in TEXTS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_last_logits_match_full_forward():
    tok = build_tokenizer(TEXTS)
    net = build_native(CFG, len(tok), seed=0)
    ids, last = encode(tok, TEXTS)
    full = net(ids)[torch.arange(len(TEXTS)), last]
    torch.testing.assert_close(last_logits(net, ids, last), full, atol=1e-5, rtol=1e-4)


def test_commentary_never_states_a_persona_answer():
    s = Scenario(prompt="p", response="A", oversight="good", oversight_is_poor=False)
    assert sorted(commentary(s).split()) == ["honest_A", "oversight_good", "selfish_A"]
    assert "A" not in commentary(s).split()


def test_finetune_learns_a_mapping_and_base_training_runs():
    records = [
        Scenario(prompt=t, response=r) for t, r in zip(TEXTS, ["A", "B", "error"], strict=True)
    ]
    tok = build_tokenizer(TEXTS)
    net = build_native(CFG, len(tok), seed=0)
    base_losses = train_base(
        net, tok, [t + " no_scenario" for t in TEXTS], TrainConfig(steps=3, lr=1e-3, batch_size=3)
    )
    assert len(base_losses) == 3
    losses = finetune(net, tok, records, TrainConfig(steps=40, lr=3e-3, batch_size=3), seed=0)
    assert losses[-1] < losses[0] / 5
    probs = answer_probs(net, tok, TEXTS)
    ids = [tok.convert_tokens_to_ids(a) for a in ("A", "B", "error")]
    assert probs.argmax(-1).tolist() == ids


def test_base_training_stops_when_told():
    tok = build_tokenizer(TEXTS)
    net = build_native(CFG, len(tok), seed=0)
    cfg = TrainConfig(steps=50, lr=1e-3, batch_size=3)
    losses = train_base(net, tok, TEXTS, cfg, stop=lambda step: step == 6)
    assert len(losses) == 7
    assert not net.training
