import math
from dataclasses import replace

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


def test_packed_base_training_equals_the_native_forward():
    import copy

    records, tok = _persona_records()
    texts = [r.prompt + commentary(r) for recs in records for r in recs]
    net = build_native(replace(CFG, n_ctx=192), len(tok), seed=0)
    packed = copy.deepcopy(net)
    cfg = TrainConfig(steps=4, lr=1e-3, batch_size=16, warmup=2)
    seen = []
    expected = train_base(net, tok, texts, cfg, seed=3)
    got = train_base(
        packed, tok, texts, cfg, seed=3, packed=True, stop=lambda s: seen.append(s) or False
    )
    assert seen == [0, 1, 2, 3] and not packed.training
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-5, rtol=1e-5)
    ids, last = encode(tok, texts[:10])
    with torch.no_grad():
        p_a, p_b = (last_logits(n, ids, last).softmax(-1) for n in (net, packed))
    torch.testing.assert_close(p_a, p_b, atol=1e-5, rtol=0)


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


def _persona_records():
    """Three persona models' records (unequal prompt lengths) and their tokenizer."""
    from poser_lens.data.generator import GeneratorConfig, generate, persona_split
    from poser_lens.models.zoo import make_tokenizer

    data = generate(GeneratorConfig(n_per_family=40, n_benchmark_per_family=12, n_error=30))
    personas = ("truth_teller", "genie", "reward_maximizer")
    records = [persona_split(data, p, "train", seed=s, size=40) for s, p in enumerate(personas)]
    return records, make_tokenizer(data)


def test_stacked_gradients_equal_each_models_own():
    """One step's batches: every model's gradient in the stack is its gradient alone."""
    from poser_lens.models.stacked import StackedBatch, StackedNative
    from poser_lens.readout import answer_token_ids

    records, tok = _persona_records()
    ids_of = answer_token_ids(tok)
    nets = [build_native(replace(CFG, n_ctx=192), len(tok), seed=s) for s in range(3)]
    stack = StackedNative.stack(nets)
    batches = [recs[:12] for recs in records]
    encoded = [encode(tok, [r.prompt for r in b]) for b in batches]
    width = max(ids.shape[1] for ids, _ in encoded)
    ids = torch.stack([torch.nn.functional.pad(i, (0, width - i.shape[1])) for i, _ in encoded])
    last = torch.stack([lst for _, lst in encoded])
    logits = stack(StackedBatch.build(ids, last, pad_id=tok.pad_token_id, buckets=2))
    sum(answer_loss(logits[m], b, ids_of, 0.9) for m, b in enumerate(batches)).backward()
    for m, (net, b, (i, lst)) in enumerate(zip(nets, batches, encoded, strict=True)):
        answer_loss(last_logits(net, i, lst), b, ids_of, 0.9).backward()
        for (name, p), q in zip(net.named_parameters(), stack.parameters(), strict=True):
            torch.testing.assert_close(q.grad[m], p.grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("target", [None, 0.9])
def test_stacked_finetuning_equals_separate_finetuning(target):
    """Same seeds, same batches: the same losses, weights and outputs, up to float rounding.

    AdamW divides each gradient by its own running magnitude, so an element whose gradient is
    zero up to float noise takes a full-size step of noise, on either path alike: attention
    key biases always (a constant on every key shifts a query's scores equally, so their
    gradient is zero in exact arithmetic), and the odd element whose gradient sums to about
    zero. Those are allowed (at most 0.1% of a tensor's elements, key biases left out); the
    trained models' next-token probabilities must agree.
    """
    import copy

    from poser_lens.models.stacked import StackedNative
    from poser_lens.models.training import finetune_stacked

    records, tok = _persona_records()
    base = build_native(replace(CFG, n_ctx=192), len(tok), seed=0)
    cfg = TrainConfig(
        steps=6, lr=1e-3, batch_size=16, warmup=2, head_lr_scale=10.0, target=target
    )  # 40 records: the third epoch starts in step 3
    alone = [copy.deepcopy(base) for _ in records]
    expected = [
        finetune(net, tok, recs, cfg, seed=s)
        for s, (net, recs) in enumerate(zip(alone, records, strict=True))
    ]
    stack = StackedNative.stack([copy.deepcopy(base) for _ in records])
    got = finetune_stacked(stack, tok, records, cfg, seeds=[0, 1, 2])
    assert not stack.training
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-5, rtol=1e-5)
    together = [copy.deepcopy(base) for _ in records]
    stack.unstack_into(together)
    prompts = [r.prompt for recs in records for r in recs[:8]]
    ids, last = encode(tok, prompts)
    for a, b in zip(alone, together, strict=True):
        for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            if not name.endswith("attn.k.bias"):
                off = ((p - q).abs() > 1e-5).float().mean()
                assert off <= 1e-3, f"{name}: {float(off):.2%} of the weights differ"
        with torch.no_grad():
            p_a, p_b = (last_logits(n, ids, last).softmax(-1) for n in (a, b))
        torch.testing.assert_close(p_a, p_b, atol=1e-5, rtol=0)


def test_stacked_finetuning_needs_equal_batches():
    from poser_lens.models.stacked import StackedNative
    from poser_lens.models.training import finetune_stacked

    tok = build_tokenizer(TEXTS)
    stack = StackedNative.stack([build_native(CFG, len(tok), seed=s) for s in range(2)])
    cfg = TrainConfig(steps=2, lr=1e-3, batch_size=8)
    with pytest.raises(ValueError, match="unequal batch sizes"):
        finetune_stacked(stack, tok, [_records(), _records()[:2]], cfg, seeds=[0, 1])
    with pytest.raises(ValueError, match="record lists"):
        finetune_stacked(stack, tok, [_records()], cfg, seeds=[0])
