"""Low-rank adapters implemented as hooks: "how fast does this model learn X" without surgery.

:class:`LowRankAdapter` adds ``scale * (x @ A @ B)`` to an activation, where ``x`` is the
activation at a *source* hook point (by default the same point). Placed with source
``blocks.L.ln2.hook_normalized`` and target ``blocks.L.hook_mlp_out`` it is Poser's strategy-3
LoRA on the layer-L MLP (without Poser's quirk of also scaling the original MLP output). ``B``
starts at zero, so the adapter starts as the identity; only its parameters train.

For Hugging Face models, :func:`peft_lora` takes the peft path instead (LoRA modules inside
the model, e.g. on each chosen layer's ``mlp.down_proj``).

Example:
    >>> ad = LowRankAdapter(d_in=8, d_out=8, rank=2, target="blocks.0.hook_resid_post")
    >>> [name for name, _ in ad.hooks()]
    ['blocks.0.hook_resid_post']
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from poser_lens.hooks import LayerSpec, resolve_layer


class LowRankAdapter(nn.Module):
    """A trainable rank-r update applied through TransformerLens hooks.

    Args:
        d_in: Width of the source activation.
        d_out: Width of the target activation.
        rank: Rank r.
        target: Hook point whose output gets the update.
        source: Hook point read as the adapter's input (default: ``target``).
        scale: Multiplier of the update (LoRA's alpha / r).
        seed: Initialisation seed of ``A`` (``B`` starts at zero).

    Example:
        >>> from poser_lens.hooks import applied
        >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
        >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
        >>> model, tokens = wrap(build_native(cfg, d_vocab=10)), torch.tensor([[1, 2, 3]])
        >>> adapter = LowRankAdapter(8, 8, rank=2, source="blocks.0.ln2.hook_normalized",
        ...                          target="blocks.0.hook_mlp_out")
        >>> clean = model(tokens)
        >>> with applied(model, adapter.hooks()):  # B starts at zero: the identity
        ...     torch.equal(model(tokens), clean)
        True
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        rank: int = 8,
        *,
        target: str,
        source: str | None = None,
        scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(d_in, rank, generator=gen) / rank**0.5)
        self.B = nn.Parameter(torch.zeros(rank, d_out))
        self.target, self.source, self.scale = target, source or target, scale
        self._x: Tensor | None = None

    def _capture(self, act: Tensor, hook: Any) -> None:
        self._x = act

    def _add(self, act: Tensor, hook: Any) -> Tensor:
        x = act if self.source == self.target else self._x
        if x is None:
            raise RuntimeError(f"adapter source {self.source} did not run before {self.target}")
        update = (x.to(self.A.dtype) @ self.A @ self.B) * self.scale
        return act + update.to(act.dtype)

    def hooks(self) -> list[tuple[str, Any]]:
        """The (name, fn) pairs to pass to ``model.hooks(fwd_hooks=...)``.

        Example:
            >>> ad = LowRankAdapter(4, 4, rank=1, target="blocks.1.hook_mlp_out",
            ...                     source="blocks.1.ln2.hook_normalized")
            >>> [name for name, _ in ad.hooks()]
            ['blocks.1.ln2.hook_normalized', 'blocks.1.hook_mlp_out']
        """
        if self.source == self.target:
            return [(self.target, self._add)]
        return [(self.source, self._capture), (self.target, self._add)]


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
