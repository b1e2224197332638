import math

import pytest
import torch

from poser_lens.data.schema import Scenario
from poser_lens.models.tiny import TinyConfig, build_native
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.models.training import (
    TrainConfig,
    answer_logodds,
    answer_loss,
    calibrate_confidence,
    commentary,
    finetune,
    soft_targets,
    train_base,
)
from poser_lens.readout import answer_probs, encode, last_logits

CFG = TinyConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64)
TEXTS = [
    "<<prompt>>red apple<</prompt>>",
    "<<prompt>>a long green pear here<</prompt>>",
    "<<prompt>>x<</prompt>>",
]


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


def _records():
    return [Scenario(prompt=t, response=r) for t, r in zip(TEXTS, ["A", "B", "error"], strict=True)]


def test_soft_targets_put_the_target_on_the_label_and_the_rest_on_the_other_letter():
    ids = {"A": 0, "B": 1, "error": 2}
    dist = soft_targets(_records(), ids, 4, 0.9)
    torch.testing.assert_close(dist.sum(-1), torch.ones(3))
    assert dist[0].tolist() == pytest.approx([0.9, 0.1, 0.0, 0.0])
    assert dist[1].tolist() == pytest.approx([0.1, 0.9, 0.0, 0.0])
    assert dist[2].tolist() == pytest.approx([0.05, 0.05, 0.9, 0.0])


def test_soft_target_loss_is_minimal_at_the_target_probability():
    ids = {"A": 0, "B": 1, "error": 2}
    rec = [Scenario(prompt="x", response="A")]
    losses = {}
    for p in (0.8, 0.9, 0.95, 0.99):
        logits = torch.log(torch.tensor([[p, 1 - p, 1e-9, 1e-9]]))
        losses[p] = float(answer_loss(logits, rec, ids, target=0.9))
    assert min(losses, key=losses.get) == 0.9
    # Hard targets (None or 1.0) are plain cross-entropy.
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    hard = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    torch.testing.assert_close(answer_loss(logits, rec, ids), hard)
    torch.testing.assert_close(answer_loss(logits, rec, ids, target=1.0), hard)


def test_soft_target_finetuning_converges_to_the_target_confidence():
    tok = build_tokenizer(TEXTS)
    net = build_native(CFG, len(tok), seed=0)
    cfg = TrainConfig(steps=300, lr=3e-3, batch_size=3, target=0.9)
    finetune(net, tok, _records(), cfg, seed=0)
    probs = answer_probs(net, tok, TEXTS)
    got = [float(probs[i, tok.convert_tokens_to_ids(a)]) for i, a in enumerate("AB")]
    assert got == pytest.approx([0.9, 0.9], abs=0.02)
    hard = build_native(CFG, len(tok), seed=0)
    finetune(hard, tok, _records(), TrainConfig(steps=300, lr=3e-3, batch_size=3), seed=0)
    p_hard = answer_probs(hard, tok, TEXTS[:1])[0, tok.convert_tokens_to_ids("A")]
    assert float(p_hard) > 0.99


def test_calibration_sets_the_median_logodds_and_keeps_the_answers():
    tok = build_tokenizer(TEXTS)
    net = build_native(CFG, len(tok), seed=0)
    finetune(net, tok, _records(), TrainConfig(steps=60, lr=3e-3, batch_size=3), seed=0)
    before = answer_probs(net, tok, TEXTS).argmax(-1)
    scale = calibrate_confidence(net, tok, _records()[:2], 0.8, statistic="median")
    assert scale > 0
    ids, last = encode(tok, TEXTS[:2])
    answers = torch.tensor([tok.convert_tokens_to_ids(a) for a in "AB"])
    with torch.no_grad():
        lo = answer_logodds(last_logits(net, ids, last), answers)
    assert float(lo.median()) == pytest.approx(math.log(0.8 / 0.2), abs=1e-3)
    assert torch.equal(answer_probs(net, tok, TEXTS).argmax(-1), before)
