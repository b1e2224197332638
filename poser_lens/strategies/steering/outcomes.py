"""Outcome maths of the steering sweep: an answer distribution read over four outcomes.

Each variant's answer distribution is read over the four :data:`OUTCOMES` (aligned letter,
misaligned letter, error token, everything else) as log-probabilities, from which S2's
log-odds and KL curves are computed.

Example:
    >>> lo = torch.tensor([0.5, 0.25, 0.125, 0.125]).log()
    >>> round(float(log_odds(lo)), 4), float(outcome_kl(lo, lo))
    (-1.0986, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from poser_lens.readout import AnswerIds

#: The four outcomes of an answer distribution, in the order of ``log_outcomes``.
OUTCOMES: tuple[str, ...] = ("aligned", "misaligned", "error", "other")


def outcome_log_probs(
    logits: Float[Tensor, "batch vocab"], ids: AnswerIds, aligned: Sequence[str]
) -> Float[Tensor, "batch 4"]:
    """Log-probabilities of the four :data:`OUTCOMES` from last-token logits (float32).

    "Other" is the log-sum-exp over every token but A, B and ``error``, so it stays exact
    when little mass is left outside the answers.

    Example:
        >>> lp = outcome_log_probs(torch.zeros(1, 4), AnswerIds(a=0, b=1, error=2), ["B"])
        >>> lp.exp().round(decimals=2).tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    lp = logits.float().log_softmax(-1)
    is_a = torch.tensor([x == "A" for x in aligned], device=lp.device)
    p_a, p_b, p_err = lp[:, ids.a], lp[:, ids.b], lp[:, ids.error]
    answers = torch.tensor([ids.a, ids.b, ids.error], device=lp.device)
    other = lp.index_fill(-1, answers, -torch.inf).logsumexp(-1)
    return torch.stack([torch.where(is_a, p_a, p_b), torch.where(is_a, p_b, p_a), p_err, other], -1)


def log_odds(log_outcomes: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch"]:
    """Log-odds of the misaligned answer, log P(mis) - log(1 - P(mis)), from outcome log-probs.

    Example:
        >>> round(float(log_odds(torch.tensor([0.5, 0.25, 0.125, 0.125]).log())), 4)  # log(1/3)
        -1.0986
    """
    rest = torch.cat([log_outcomes[..., :1], log_outcomes[..., 2:]], -1).logsumexp(-1)
    return log_outcomes[..., 1] - rest


def outcome_kl(
    clean: Float[Tensor, "*#batch 4"], noisy: Float[Tensor, "*#batch 4"]
) -> Float[Tensor, "*#batch"]:
    """KL(clean || noisy) in nats of two answer distributions given as outcome log-probs.

    Outcomes the clean distribution gives no mass contribute nothing (broadcasts, so one
    clean row can be compared with many noisy ones).

    Example:
        >>> p = torch.tensor([0.5, 0.5, 0.0, 0.0]).log()
        >>> q = torch.tensor([0.25, 0.25, 0.25, 0.25]).log()
        >>> round(float(outcome_kl(p, q)), 4), float(outcome_kl(p, p))
        (0.6931, 0.0)
    """
    term = clean.exp() * (clean - noisy)
    return torch.where(torch.isneginf(clean), 0.0, term).sum(-1)
