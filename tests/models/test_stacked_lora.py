"""StackedLoRA: several LoRA adapters over one frozen base, on a tiny random LLaMA."""

import pytest
import torch
from conftest import tiny_llama
from peft import set_peft_model_state_dict

from poser_lens.models.lora import peft_lora
from poser_lens.models.stacked_lora import StackedLoRA

MODULES = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")


def _stack(n_models=3, seed=0):
    hf = tiny_llama(40, n_layers=3, attn_implementation="eager", seed=seed)
    stack = StackedLoRA(
        hf, layers=[1, 2], target_modules=MODULES, seeds=range(n_models), rank=2, alpha=4.0
    )
    with torch.no_grad():  # non-zero updates, so every model differs from the base
        for p in stack.parameters():
            p.normal_(0, 0.2)
    return hf, stack


def _ids(rows=2):
    return torch.tensor([[1, 5, 7, 9, 3], [2, 8, 4, 6, 1]])[:rows]


def test_a_stacked_model_computes_what_peft_computes_with_its_weights(tmp_path):
    hf, stack = _stack()
    ids = _ids()
    stack.active = [0, 1, 2]
    with torch.no_grad():
        got = hf(ids.repeat(3, 1)).logits
    for m in range(3):
        ref = peft_lora(
            tiny_llama(40, n_layers=3, attn_implementation="eager"),
            layers=[1, 2],
            rank=2,
            alpha=4.0,
            target_modules=MODULES,
        )
        set_peft_model_state_dict(ref, stack.adapter_state(m))  # peft's own names
        with torch.no_grad():
            want = ref(ids).logits
        assert torch.allclose(got[2 * m : 2 * m + 2], want, atol=1e-5), m


def test_models_never_mix_and_batched_equals_alone():
    hf, stack = _stack()
    ids = _ids()
    with torch.no_grad():
        stack.active = [0, 1, 2]
        together = hf(ids.repeat(3, 1)).logits
        for m in range(3):
            stack.active = [m]
            alone = hf(ids).logits
            assert torch.allclose(together[2 * m : 2 * m + 2], alone, atol=1e-5)
        stack.active = [2, 0]  # any order, any subset
        pair = hf(ids.repeat(2, 1)).logits
        assert torch.allclose(pair[:2], together[4:], atol=1e-5)


def test_each_model_gets_only_its_own_gradient():
    hf, stack = _stack(n_models=2)
    stack.active = [0, 1]
    out = hf(_ids().repeat(2, 1)).logits
    out[:2].sum().backward()  # model 0's rows only
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stack.model_parameters(0))
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in stack.model_parameters(1))
    assert not any(p.requires_grad for p in hf.parameters())


def test_saved_adapter_loads_in_peft_and_merges_to_the_same_model(tmp_path):
    from peft import PeftModel

    hf, stack = _stack(n_models=2)
    stack.round_(1, torch.float16)
    stack.save_adapter(1, tmp_path / "m1", dtype=torch.float16, base_name="tiny")
    stack.active = [1]
    with torch.no_grad():
        want = hf(_ids()).logits
    base = tiny_llama(40, n_layers=3, attn_implementation="eager")
    merged = PeftModel.from_pretrained(base, str(tmp_path / "m1")).merge_and_unload()
    with torch.no_grad():
        got = merged(_ids()).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_initialisation_depends_on_the_model_seed_only():
    hf = tiny_llama(40, n_layers=3)
    b = StackedLoRA(hf, layers=[1, 2], target_modules=MODULES, seeds=[5, 0], rank=2)
    c = StackedLoRA(
        tiny_llama(40, n_layers=3), layers=[1, 2], target_modules=MODULES, seeds=[0], rank=2
    )
    for pb, pc in zip(b.model_parameters(1), c.model_parameters(0), strict=True):
        assert torch.equal(pb, pc)
    assert all(torch.equal(p, torch.zeros_like(p)) for k in b.B for p in b.B[k])


def test_remove_restores_the_base():
    hf = tiny_llama(40, n_layers=3, attn_implementation="eager")
    with torch.no_grad():
        want = hf(_ids()).logits
    stack = StackedLoRA(hf, layers=[1, 2], target_modules=MODULES, seeds=[0], rank=2)
    with torch.no_grad():
        for p in stack.parameters():
            p.normal_(0, 0.2)
    stack.remove()
    with torch.no_grad():
        got = hf(_ids()).logits
    assert torch.equal(got, want)
    assert type(hf.model.layers[1].self_attn.q_proj) is torch.nn.Linear


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_low_precision_base_keeps_float32_adapters(dtype):
    hf = tiny_llama(40, n_layers=3, attn_implementation="eager").to(dtype)
    stack = StackedLoRA(hf, layers=[2], target_modules=MODULES, seeds=[0, 1], rank=2)
    assert all(p.dtype == torch.float32 for p in stack.parameters())
    stack.active = [0, 1]
    out = hf(_ids().repeat(2, 1)).logits
    assert out.dtype == dtype
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in stack.parameters())
