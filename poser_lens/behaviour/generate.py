"""Chat prompts and batched generation (greedy or seeded sampling) from a hooked or HF model.

A *generator* is any callable ``(prompts, *, sample, seed) -> answers``; tests pass a fake one.
:class:`ModelGenerator` is the real one: for a ``TransformerBridge`` over a Hugging Face model
(the smol testbed) or a bare HF model it calls HF ``generate`` with a KV cache and left
padding; for a native TransformerLens model (the tiny zoo) it runs a plain token loop.

Example:
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> chat_prompt(build_tokenizer(["a"]), "Be nice.", "Hi")
    'System: Be nice.\\nUser: Hi\\nAssistant:'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from jaxtyping import Float
from torch import Tensor


class Generator(Protocol):
    """Answers a batch of prompts; ``sample=False`` is greedy, ``seed`` fixes sampling."""

    def __call__(self, prompts: Sequence[str], *, sample: bool, seed: int) -> list[str]:
        """Return one answer per prompt."""
        ...


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer: Any, system: str, user: str) -> str:
    """A one-turn chat prompt, ending where the assistant's answer starts.

    Uses the tokenizer's chat template when it has one, else a plain
    ``System: ... / User: ... / Assistant:`` layout.
    """
    if has_chat_template(tokenizer):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"System: {system}\nUser: {user}\nAssistant:"


def hf_model_of(model: Any) -> Any | None:
    """The Hugging Face model behind ``model`` (a bridge or an HF model), or None."""
    from transformers import PreTrainedModel

    for candidate in (getattr(model, "original_model", None), model):
        if isinstance(candidate, PreTrainedModel):
            return candidate
    return None


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


@dataclass
class ModelGenerator:
    """Generate answers with a hooked model (or an HF model), in batches.

    Pass the plain HF model where there is one (as :func:`poser_lens.behaviour.load_chat_model`
    does): through a ``TransformerBridge`` generation cannot use the KV cache and is slower.

    Attributes:
        model: A ``TransformerBridge`` (HF-backed or native) or an HF causal LM.
        tokenizer: Its tokenizer.
        max_new_tokens: Answer length cap, in tokens.
        temperature: Sampling temperature (plain sampling: no top-k/top-p).
        device: Where the inputs go (the model must already be there).
    """

    model: Any
    tokenizer: Any
    max_new_tokens: int = 48
    temperature: float = 1.0
    device: str | torch.device = "cpu"

    def __call__(self, prompts: Sequence[str], *, sample: bool, seed: int) -> list[str]:
        """Answer each prompt (special tokens stripped, whitespace trimmed)."""
        if not prompts:
            return []
        hf = hf_model_of(self.model)
        if hf is not None:
            return self._hf(hf, prompts, sample=sample, seed=seed)
        return [self._native(p, sample=sample, seed=seed + i) for i, p in enumerate(prompts)]

    def _hf(self, hf: Any, prompts: Sequence[str], *, sample: bool, seed: int) -> list[str]:
        tok = self.tokenizer
        enc = tok(
            list(prompts),
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=not has_chat_template(tok),
        ).to(self.device)
        kwargs: dict[str, Any] = {"do_sample": sample}
        if sample:
            kwargs.update(temperature=self.temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        if hf is not self.model:
            # Through a TransformerBridge the HF KV cache gives wrong tokens after the first one
            # (TransformerLens 4.3, measured on smol): recompute the whole prefix every step.
            kwargs["use_cache"] = False
        torch.manual_seed(seed)
        with torch.no_grad():
            out = hf.generate(
                **enc, max_new_tokens=self.max_new_tokens, pad_token_id=_pad_id(tok), **kwargs
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]

    def _native(self, prompt: str, *, sample: bool, seed: int) -> str:
        tok = self.tokenizer
        ids = tok(prompt, return_tensors="pt")["input_ids"].to(self.device)
        n_ctx = getattr(getattr(self.model, "cfg", None), "n_ctx", None)
        rng = torch.Generator(device="cpu").manual_seed(seed)
        eos = tok.eos_token_id
        new: list[int] = []
        with torch.no_grad():
            for _ in range(self.max_new_tokens):
                if n_ctx is not None and ids.shape[1] >= n_ctx:
                    break
                logits: Float[Tensor, " vocab"] = self.model(ids)[0, -1].float().cpu()
                if sample:
                    probs = (logits / self.temperature).softmax(-1)
                    nxt = int(torch.multinomial(probs, 1, generator=rng))
                else:
                    nxt = int(logits.argmax())
                if eos is not None and nxt == eos:
                    break
                new.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
        return tok.decode(new, skip_special_tokens=True).strip()
