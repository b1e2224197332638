"""LoRA adapters inside a Hugging Face model, with peft (the smol zoo's persona adapters).

The hooked counterpart, an adapter as a pair of hooks on any TransformerLens model, is
:class:`poser_lens.adapters.LowRankAdapter`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from poser_lens.depth import LayerSpec, resolve_layer


def peft_lora(
    hf_model: Any,
    layers: LayerSpec | Sequence[LayerSpec],
    rank: int = 8,
    alpha: float | None = None,
    target_modules: Sequence[str] = ("mlp.down_proj",),
    *,
    dropout: float = 0.0,
    seed: int = 0,
) -> Any:
    """Wrap a Hugging Face LLaMA-family model with peft LoRA adapters on chosen layers.

    Adapters go on the modules named by ``target_modules`` (matched at the end of module
    names, e.g. ``mlp.down_proj`` or ``self_attn.o_proj``) inside the decoder layers
    ``layers`` (block indices, or fractions of depth as in :func:`poser_lens.hooks.resolve_layer`).
    ``B`` starts at zero, so the wrapped model computes what the base did; only the adapter
    parameters require gradients. peft injects the adapters into ``hf_model`` itself (the
    base model is modified in place; ``model.unload()`` removes them again).

    Args:
        hf_model: A ``transformers`` causal LM (``model.layers.{i}`` blocks).
        layers: One layer or several.
        rank: LoRA rank r.
        alpha: LoRA alpha; the update is scaled by ``alpha / rank`` (default: ``rank``, a scale
            of 1, as :class:`LowRankAdapter`).
        target_modules: Module name suffixes inside each layer.
        dropout: LoRA dropout (0 keeps training deterministic).
        seed: Initialisation seed of the ``A`` matrices (the global RNG is left untouched).

    Returns:
        The ``peft.PeftModel``.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> hf = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, vocab_size=20))
        >>> lora = peft_lora(hf, layers=[1], rank=2)
        >>> sorted(n for n, p in lora.named_parameters() if p.requires_grad)  # doctest: +ELLIPSIS
        ['...layers.1.mlp.down_proj.lora_A.default.weight', '...lora_B.default.weight']
    """
    from peft import LoraConfig, get_peft_model

    n_layers = int(hf_model.config.num_hidden_layers)
    specs = [layers] if isinstance(layers, int | float) else list(layers)
    indices = sorted({resolve_layer(n_layers, layer) for layer in specs})
    config = LoraConfig(
        r=rank,
        # peft annotates lora_alpha as int, but it only divides it by r: a float is fine.
        lora_alpha=float(rank if alpha is None else alpha),  # type: ignore[arg-type]
        lora_dropout=dropout,
        target_modules=list(target_modules),
        layers_to_transform=indices,
        layers_pattern="layers",
        bias="none",
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # transformers 5 deprecates an attribute that peft still reads; nothing to act on here.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        torch.manual_seed(seed)
        return get_peft_model(hf_model, config)
