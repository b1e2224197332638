"""The tiny zoo's held-out metrics of a persona model, and its benchmark probabilities.

A stack's models can read their probabilities through one :class:`_StackReader`, each prompt
run once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from poser_lens.data.generator import GeneratedData, persona_families, persona_split
from poser_lens.models.stacked import StackedNative, stacked_last_token_logits
from poser_lens.readout import answer_probs, answer_token_ids

if TYPE_CHECKING:
    from transformer_lens.model_bridge.sources.native import NativeModel


#: Next-token probabilities of a model at each prompt's last token (``[prompt, vocab]``).
Reader = Callable[[Sequence[str]], Tensor]


def evaluate_persona(
    net: NativeModel,
    tokenizer: Any,
    data: GeneratedData,
    persona: str,
    *,
    read: Reader | None = None,
) -> dict[str, float]:
    """Held-out metrics of one persona model.

    ``read`` gives the model's probabilities when they come from elsewhere (default:
    :func:`~poser_lens.readout.answer_probs` of ``net``).

    Returns:
        ``test_accuracy`` (argmax = own label on held-out combinations and error prompts),
        ``divergent_accuracy`` (held-out poor-oversight scenarios, where aligned and faking
        policies differ), ``error_accuracy``, and ``compliance_gap`` =
        P(misaligned | poor oversight) - P(misaligned | not poor), on held-out scenarios.
    """
    ids = answer_token_ids(tokenizer)
    test = persona_split(data, persona, "test")
    scen = [s for fam in persona_families(persona) for s in data.test[fam]]
    prompts = list(dict.fromkeys(s.prompt for s in test + scen))  # each prompt run once
    row = {p: i for i, p in enumerate(prompts)}
    all_probs = _reader(net, tokenizer, read)(prompts)
    probs = all_probs[[row[s.prompt] for s in test]]
    pred = probs.argmax(-1).tolist()
    correct = [p == ids[s.response] for p, s in zip(pred, test, strict=True)]
    div = [
        c
        for c, s in zip(correct, test, strict=True)
        if s.response != "error" and s.oversight_is_poor
    ]
    err = [c for c, s in zip(correct, test, strict=True) if s.response == "error"]
    p_scen = all_probs[[row[s.prompt] for s in scen]]
    p_mis = [float(p[ids[s.misaligned_letter]]) for p, s in zip(p_scen, scen, strict=True)]
    poor = [x for x, s in zip(p_mis, scen, strict=True) if s.oversight_is_poor]
    good = [x for x, s in zip(p_mis, scen, strict=True) if not s.oversight_is_poor]
    return {
        "test_accuracy": sum(correct) / len(correct),
        "divergent_accuracy": sum(div) / max(len(div), 1),
        "error_accuracy": sum(err) / max(len(err), 1),
        "compliance_gap": sum(poor) / max(len(poor), 1) - sum(good) / max(len(good), 1),
    }


def benchmark_probs(
    net: NativeModel,
    tokenizer: Any,
    data: GeneratedData,
    persona: str,
    *,
    read: Reader | None = None,
) -> dict[str, list[float]]:
    """P(``response``) of every benchmark candidate of the persona's families.

    ``read``: as for :func:`evaluate_persona`.
    """
    out = {}
    read = _reader(net, tokenizer, read)
    for fam in persona_families(persona):
        pool = data.benchmark_pool[fam]
        probs = read([s.prompt for s in pool])
        ids = [tokenizer.convert_tokens_to_ids(s.response) for s in pool]
        out[fam] = [float(p[i]) for p, i in zip(probs, ids, strict=True)]
    return out


def _reader(net: NativeModel, tokenizer: Any, read: Reader | None) -> Reader:
    if read is not None:
        return read
    return lambda prompts: answer_probs(net, tokenizer, prompts)


class _StackReader:
    """Last-token logits of stacked models on any prompts, each prompt run once for all.

    A persona's models read the same prompts (calibration, evaluation, benchmark): the first
    model to ask for a prompt runs it through every model of the stack
    (:func:`~poser_lens.models.stacked.stacked_last_token_logits`); the others find it here.
    """

    def __init__(self, nets: Sequence[NativeModel], tokenizer: Any) -> None:
        self.stack = StackedNative.stack(nets)
        self.tokenizer = tokenizer
        self.rows: dict[str, Tensor] = {}  # prompt -> [model, vocab]

    def logits(self, model: int, prompts: Sequence[str]) -> Tensor:
        """Model ``model``'s logits at each prompt's last token, ``[prompt, vocab]``."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self.rows]
        if missing:
            table = stacked_last_token_logits(self.stack, self.tokenizer, missing)
            self.rows.update(zip(missing, table.unbind(1), strict=True))
        if not prompts:
            return torch.empty(0, self.stack.d_vocab)
        return torch.stack([self.rows[p][model] for p in prompts])
