"""Several LoRA adapters over one frozen Hugging Face model, trained at once.

The smol zoo's persona models share their base (SmolLM2-135M) and differ only in low-rank
adapters. :class:`StackedLoRA` puts ``M`` models' adapters into one base: each adapted linear
map computes the base product once for every row of the batch and adds each model's own
low-rank update to that model's rows (two batched products over the model axis). The batch
holds the active models' rows one block after another, the same number of rows per model.

The models never mix: a row's output depends only on the base and its own model's adapter, so
the sum of per-model losses gives every model the gradient it gets alone. Parameters are kept
per model (``A[key][m]``, ``B[key][m]``), so a model that has finished training leaves the
stack (:attr:`StackedLoRA.active`) while the others go on, and an optimiser skips it (its
parameters get no gradient).

A model's adapter is saved as a peft LoRA folder (:meth:`StackedLoRA.save_adapter`), which
:func:`poser_lens.models.smol.load_smol_hf` merges like any peft adapter. Each adapter is
initialised as peft initialises one (``A`` Kaiming-uniform, ``B`` zero), from a generator
seeded by the model's own seed, so its start does not depend on the other models of the stack.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> hf = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32,
    ...     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, vocab_size=20))
    >>> stack = StackedLoRA(hf, layers=[1], target_modules=("mlp.down_proj",), seeds=[0, 1],
    ...                     rank=2)
    >>> stack.active = [0, 1]
    >>> ids = torch.tensor([[1, 2, 3], [1, 2, 3]])
    >>> bool(torch.equal(hf(ids).logits[0], hf(ids).logits[1]))  # B starts at zero
    True
    >>> stack.remove()
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class _StackedLinear(nn.Module):
    """A frozen linear map plus the active models' low-rank updates, block by block."""

    def __init__(self, base: nn.Linear, owner: StackedLoRA, key: str) -> None:
        super().__init__()
        self.base = base
        self.key = key
        # A plain attribute, not a submodule: the owner holds the parameters.
        object.__setattr__(self, "owner", owner)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        owner: StackedLoRA = self.owner  # type: ignore[assignment]
        active = owner.active
        if not active:
            return y
        k = len(active)
        a = torch.stack([owner.weight("A", self.key, m) for m in active]).to(x.dtype)  # [k,r,in]
        b = torch.stack([owner.weight("B", self.key, m) for m in active]).to(x.dtype)  # [k,out,r]
        xa = torch.bmm(x.reshape(k, -1, x.shape[-1]), a.transpose(1, 2))
        # y + scale * (x A^T) B^T, the add and the scale fused into one product.
        out = torch.baddbmm(y.reshape(k, -1, y.shape[-1]), xa, b.transpose(1, 2), alpha=owner.scale)
        return out.reshape(y.shape)


class StackedLoRA(nn.Module):
    """``M`` LoRA adapters (one per model) injected into one frozen HF causal LM.

    Args:
        hf_model: A ``transformers`` causal LM with ``model.layers.{i}`` blocks (modified in
            place: the target linears are wrapped; :meth:`remove` restores them).
        layers: Decoder layers that get adapters.
        target_modules: Module name suffixes inside each layer (e.g. ``self_attn.q_proj``).
        seeds: One initialisation seed per model (its ``A`` matrices).
        rank: LoRA rank.
        alpha: LoRA alpha (updates scaled by ``alpha / rank``).
    """

    def __init__(
        self,
        hf_model: Any,
        layers: Sequence[int],
        target_modules: Sequence[str],
        seeds: Sequence[int],
        rank: int = 8,
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        self.hf_model = [hf_model]  # not a submodule: the base stays out of parameters()
        self.layers = sorted(set(layers))
        self.target_modules = tuple(target_modules)
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        self.n_models = len(seeds)
        #: Indices of the models whose rows the next forward holds, in batch order.
        self.active: list[int] = list(range(self.n_models))
        self.A = nn.ModuleDict()
        self.B = nn.ModuleDict()
        self._wrapped: list[tuple[nn.Module, str, nn.Linear]] = []
        hf_model.requires_grad_(False)
        decoder = _decoder(hf_model)
        for i in self.layers:
            for suffix in self.target_modules:
                parent_name, _, leaf = f"layers.{i}.{suffix}".rpartition(".")
                parent = decoder.get_submodule(parent_name)
                base = getattr(parent, leaf)
                key = f"{i}.{suffix}".replace(".", "__")
                self.A[key] = nn.ParameterList(
                    nn.Parameter(torch.empty(rank, base.in_features)) for _ in seeds
                )
                self.B[key] = nn.ParameterList(
                    nn.Parameter(torch.zeros(base.out_features, rank)) for _ in seeds
                )
                self._wrapped.append((parent, leaf, base))
                setattr(parent, leaf, _StackedLinear(base, self, key))
        device = next(hf_model.parameters()).device
        for m, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(int(seed))
            for key in self.A:
                # peft's initialisation of lora_A (Kaiming-uniform, a = sqrt(5)).
                nn.init.kaiming_uniform_(self.weight("A", key, m), a=math.sqrt(5), generator=gen)
        self.to(device)

    def weight(self, part: str, key: str, m: int) -> nn.Parameter:
        """Model ``m``'s ``A`` (``[rank, in]``) or ``B`` (``[out, rank]``) of one linear map."""
        store = self.A if part == "A" else self.B
        params = store[key]
        assert isinstance(params, nn.ParameterList)
        p = params[m]
        assert isinstance(p, nn.Parameter)
        return p

    def model_parameters(self, m: int) -> list[nn.Parameter]:
        """The trainable parameters of model ``m``."""
        return [self.weight(part, key, m) for key in self.A for part in ("A", "B")]

    @torch.no_grad()
    def round_(self, m: int, dtype: torch.dtype) -> None:
        """Round model ``m``'s adapter to ``dtype`` in place (as it will be saved)."""
        for p in self.model_parameters(m):
            p.copy_(p.to(dtype).to(p.dtype))

    def adapter_state(self, m: int, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """Model ``m``'s adapter under peft's state-dict names."""
        out: dict[str, Tensor] = {}
        for key in self.A:
            name = "base_model.model.model.layers." + key.replace("__", ".")
            for part in ("A", "B"):
                t = self.weight(part, key, m).detach().cpu().contiguous()
                out[f"{name}.lora_{part}.weight"] = t.to(dtype) if dtype is not None else t.clone()
        return out

    def save_adapter(
        self, m: int, folder: str | Path, *, dtype: torch.dtype, base_name: str
    ) -> None:
        """Write model ``m``'s adapter as a peft LoRA folder (config and safetensors)."""
        from peft import LoraConfig
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]
            lora_dropout=0.0,
            target_modules=list(self.target_modules),
            layers_to_transform=list(self.layers),
            layers_pattern="layers",
            bias="none",
            task_type="CAUSAL_LM",
            inference_mode=True,
            base_model_name_or_path=base_name,
        )
        config.save_pretrained(str(folder))
        path = folder / "adapter_config.json"
        path.write_text(json.dumps(json.loads(path.read_text()), indent=2, sort_keys=True))
        save_file(
            self.adapter_state(m, dtype),
            str(folder / "adapter_model.safetensors"),
            metadata={"format": "pt"},
        )

    def remove(self) -> None:
        """Put the base model's own linear maps back."""
        for parent, leaf, base in self._wrapped:
            setattr(parent, leaf, base)
        self._wrapped = []


def _decoder(model: Any) -> Any:
    """The ``LlamaModel`` inside an HF causal LM, peft-wrapped or not."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model
