"""The smol zoo's training machinery on a tiny random LLaMA (no SmolLM2 needed)."""

import torch
from conftest import tiny_llama

from poser_lens.models.lora import peft_lora
from poser_lens.models.smol_zoo import FrozenPrefix, SmolZooConfig, first_adapted_layer
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.readout import encode, last_logits


def test_first_adapted_layer_follows_lora_from():
    assert first_adapted_layer(SmolZooConfig(), 30) == 18
    assert first_adapted_layer(SmolZooConfig(lora_from=0.5), 4) == 2


def test_frozen_prefix_gives_the_full_forward_and_trains_the_adapters():
    tok = build_tokenizer(["a b c d e f <<prompt>> <</prompt>> A B error"])
    model = peft_lora(
        tiny_llama(len(tok), n_layers=4, attn_implementation="eager"), layers=[2, 3], rank=2, seed=1
    )
    with torch.no_grad():  # a non-zero adapter, so the top really differs from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    prompts = ["a b c", "a b c d e f a", "f e"]
    ids, last = encode(tok, prompts)
    want = last_logits(model, ids, last)
    prefix = FrozenPrefix(model, first=2)
    prefix.residuals(tok, prompts, batch_size=2)
    got = prefix.logits(prompts)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    one = prefix.logits(["a b c d e f a"])  # batched equals unbatched
    assert torch.allclose(one[0], got[1], atol=1e-5)
    got[:, 0].sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert len(model.get_base_model().model.layers) == 4  # the full decoder is restored
