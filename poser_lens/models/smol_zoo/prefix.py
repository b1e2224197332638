"""The frozen prefix: the layers below the first adapted one, run once per prompt."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from poser_lens.models.smol_zoo.config import SmolZooConfig
from poser_lens.readout import encode


def first_adapted_layer(cfg: SmolZooConfig, n_layers: int) -> int:
    """The lowest decoder layer that gets LoRA (``lora_from`` of the depth)."""
    return int(cfg.lora_from * n_layers)


def _decoder(model: Any) -> Any:
    """The ``LlamaModel`` inside an HF causal LM, peft-wrapped or not."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model


@contextlib.contextmanager
def _only_layers(model: Any, layers: slice) -> Iterator[Any]:
    """The decoder with only ``layers`` of its blocks in place (restored afterwards)."""
    decoder = _decoder(model)
    full = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(full)[layers])
    try:
        yield decoder
    finally:
        decoder.layers = full


class FrozenPrefix:
    """The residual stream entering the first adapted layer, computed once per prompt.

    LoRA sits on the layers from ``first`` up; the layers below are frozen, so what they
    compute for a prompt is the same at every step and epoch. :meth:`residuals` runs them once
    (no gradients) and :meth:`logits` runs only the adapted top on cached residuals, through
    the decoder's own forward (rotary positions and the causal mask as in the full model), so
    the logits are those of the full forward. Training pays for ``n_layers - first`` layers
    instead of all of them.

    Args:
        model: The (peft-wrapped) HF causal LM.
        first: The first adapted layer.
    """

    def __init__(self, model: Any, first: int) -> None:
        self.model = model
        self.first = first
        self._cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def residuals(
        self,
        tokenizer: Any,
        prompts: Sequence[str],
        batch_size: int = 16,
        *,
        progress: bool = False,
    ) -> None:
        """Compute and keep the residuals of the prompts not cached yet (one row each).

        With ``progress``, a bar counts the prompts (shown only when there are many).
        """
        from tqdm.auto import tqdm

        # Similar lengths batched together: little work on padding.
        todo = sorted((p for p in dict.fromkeys(prompts) if p not in self._cache), key=len)
        bar = tqdm(
            total=len(todo),
            desc="frozen prefix",
            unit="prompt",
            disable=not progress or len(todo) < 4 * batch_size,
        )
        device = next(self.model.parameters()).device
        captured: list[Tensor] = []

        def keep(_module: Any, _inputs: Any, out: Any) -> None:
            captured.append(out[0] if isinstance(out, tuple) else out)

        with _only_layers(self.model, slice(0, self.first)) as decoder:
            hook = decoder.layers[-1].register_forward_hook(keep)
            try:
                for i in range(0, len(todo), batch_size):
                    chunk = todo[i : i + batch_size]
                    ids, last = encode(tokenizer, chunk)
                    captured.clear()
                    decoder(input_ids=ids[:, : int(last.max()) + 1].to(device))
                    for row, (p, n) in enumerate(zip(chunk, last.tolist(), strict=True)):
                        self._cache[p] = captured[0][row, : n + 1].detach().clone()
                    bar.update(len(chunk))
            finally:
                hook.remove()
                bar.close()

    def last_index(self, prompts: Sequence[str]) -> Tensor:
        """Each prompt's last position (its cached length minus one)."""
        rows = [self._cache[p] for p in prompts]
        return torch.tensor([len(r) - 1 for r in rows], device=rows[0].device)

    def logits(self, prompts: Sequence[str]) -> Float[Tensor, "batch vocab"]:
        """Logits at each prompt's last token from its cached residuals (gradients flow)."""
        rows = [self._cache[p] for p in prompts]
        last = self.last_index(prompts)
        h = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # right padding: inert
        with _only_layers(self.model, slice(self.first, None)) as decoder:
            out = decoder(inputs_embeds=h).last_hidden_state
        inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return inner.lm_head(out[torch.arange(len(rows), device=h.device), last])
