import torch
from conftest import tiny_llama

from poser_lens.models.lora import peft_lora


def test_peft_lora_starts_as_the_base_and_trains_only_the_adapter():
    hf = tiny_llama()
    ids = torch.tensor([[1, 5, 9, 3], [2, 4, 6, 8]])
    with torch.no_grad():
        base = hf(ids).logits
    lora = peft_lora(hf, layers=[0, 1.0], rank=4, alpha=8, seed=0)
    with torch.no_grad():
        assert torch.equal(lora(input_ids=ids).logits, base)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".layers.")[1].split(".")[0] for n in trainable} == {"0", "1"}
    assert all("mlp.down_proj" in n for n in trainable)
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(lora(input_ids=ids).logits[:, -1], ids[:, 0])
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(lora(input_ids=ids).logits, base)


def test_peft_lora_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = peft_lora(tiny_llama(), layers=0.5, rank=2, target_modules=("self_attn.o_proj",))
    b = peft_lora(tiny_llama(), layers=0.5, rank=2, target_modules=("self_attn.o_proj",))
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    names = [n for n in pa if "lora_A" in n]
    assert len(names) == 1 and ".layers.1.self_attn.o_proj" in names[0]
    assert torch.equal(pa[names[0]], pb[names[0]])
