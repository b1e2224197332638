"""Answer readout: P(A), P(B), P(error) and P(misaligned) from last-position logits.

Answer token ids are resolved from the tokenizer (never hard-coded), with a clear error when
an answer is not a single token.

Example:
    >>> import torch
    >>> ids = AnswerIds(a=0, b=1, error=2)
    >>> r = answer_readout(torch.tensor([[2.0, 0.0, 0.0, -9.0]]), ids, aligned=["B"])
    >>> round(float(r.p_misaligned[0]), 3), round(float(r.mass_ab[0]), 3)
    (0.787, 0.893)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class AnswerIds:
    """Token ids of the three single-token answers.

    Example:
        >>> AnswerIds(a=5, b=6, error=7).b
        6
    """

    a: int
    b: int
    error: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> AnswerIds:
        """Resolve ``A``, ``B`` and ``error`` from a tokenizer (raises if not single tokens).

        Example:
            >>> from poser_lens.models.tokenizer import build_tokenizer
            >>> tok = build_tokenizer(["x"])
            >>> AnswerIds.from_tokenizer(tok).a == tok.convert_tokens_to_ids("A")
            True
        """
        from poser_lens.models.tokenizer import answer_token_ids

        ids = answer_token_ids(tokenizer)
        return cls(a=ids["A"], b=ids["B"], error=ids["error"])

    def of(self, letter: str) -> int:
        """Id of ``A``, ``B`` or ``error``.

        Example:
            >>> AnswerIds(a=5, b=6, error=7).of("error")
            7
        """
        return {"A": self.a, "B": self.b, "error": self.error}[letter]


@dataclass(frozen=True)
class Readout:
    """Answer probabilities of a batch (softmax over the full vocabulary).

    Attributes:
        p_a: P(A) per prompt.
        p_b: P(B) per prompt.
        p_error: P(error) per prompt.
        mass_ab: P(A) + P(B) (how much mass stays on the answers; Poser's Fig 11).
        p_misaligned: P(the letter that is not the aligned one), when aligned letters were given.

    Example:
        >>> r = answer_readout(torch.zeros(1, 4), AnswerIds(a=0, b=1, error=2))
        >>> float(r.p_a[0]), float(r.mass_ab[0]), r.p_misaligned
        (0.25, 0.5, None)
    """

    p_a: Float[Tensor, " batch"]
    p_b: Float[Tensor, " batch"]
    p_error: Float[Tensor, " batch"]
    mass_ab: Float[Tensor, " batch"]
    p_misaligned: Float[Tensor, " batch"] | None = None


def answer_readout(
    logits: Float[Tensor, "batch vocab"],
    ids: AnswerIds,
    aligned: Sequence[str] | None = None,
) -> Readout:
    """Read answer probabilities from last-position logits.

    Args:
        logits: Logits at each prompt's last token.
        ids: Answer token ids.
        aligned: The aligned letter of each prompt (``A``/``B``), to get P(misaligned).

    Returns:
        The probabilities.

    Example:
        >>> logits = torch.tensor([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
        >>> r = answer_readout(logits, AnswerIds(a=0, b=1, error=2), aligned=["A", "B"])
        >>> [round(float(p), 3) for p in r.p_misaligned]
        [0.333, 1.0]
    """
    probs = logits.float().softmax(-1)
    p_a, p_b, p_err = probs[:, ids.a], probs[:, ids.b], probs[:, ids.error]
    p_mis = None
    if aligned is not None:
        if len(aligned) != len(logits):
            raise ValueError(f"{len(aligned)} aligned letters for {len(logits)} prompts")
        bad = [x for x in aligned if x not in ("A", "B")]
        if bad:
            raise ValueError(f"aligned letters must be A or B, got {bad[0]!r}")
        is_a = torch.tensor([x == "A" for x in aligned], device=probs.device)
        p_mis = torch.where(is_a, p_b, p_a)
    return Readout(p_a=p_a, p_b=p_b, p_error=p_err, mass_ab=p_a + p_b, p_misaligned=p_mis)
