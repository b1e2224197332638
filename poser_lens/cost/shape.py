"""The shape of one (model, family)'s work: the model's depth and its prompts' sizes.

:class:`WorkShape` is what the declared work of a strategy depends on
(:func:`poser_lens.cost.declarations.work`); :func:`measure_shape` measures it on a family's
prompts under a tokenizer, :func:`poser_lens.cost.report.poser_families` assumes it for
Poser's.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from poser_lens.data.concepts import CONCEPT_PAIRS
from poser_lens.data.defection import defection_pairs, pick_set
from poser_lens.data.prompts import critical_prompts, remove_critical
from poser_lens.data.schema import Scenario
from poser_lens.readout import token_ids


@dataclass(frozen=True)
class WorkShape:
    """What the work of scoring one (model, family) depends on: the model's depth, the prompts.

    A strategy's declared work (:func:`poser_lens.cost.declarations.work`) turns it into
    passes, whose FLOPs :mod:`poser_lens.cost.flops` counts (the cost report and the run
    profile read them).

    Attributes:
        n_layers: Blocks of the model.
        n_ctx: Its longest input, in tokens.
        n_valid: Valid prompts of the family.
        n_critical: Of them, those with a critical fact (S1/S2 contrast pairs, S6, patching).
        seq: Mean tokens of a valid prompt.
        seq_longest: Tokens of the longest valid prompt (how far batches pad, see
            :meth:`padded`).
        seq_critical: Mean tokens of a valid prompt with a critical fact.
        seq_clean: Mean tokens of such a prompt without its critical facts.
        concepts: Strategy 4's concept sets, ``(name, examples, mean tokens, longest)`` each.
        defection: The defection probe's contrast pairs, the tokens of each pair's question,
            "yes" and "no" texts (the set the tokenizer reads,
            :func:`~poser_lens.data.defection.pick_set`), in stored order.
    """

    n_layers: int
    n_ctx: int
    n_valid: int
    n_critical: int
    seq: float
    seq_longest: float
    seq_critical: float
    seq_clean: float
    concepts: tuple[tuple[str, int, float, float], ...] = ()
    defection: tuple[tuple[int, int, int], ...] = ()

    def padded(
        self,
        rows: int,
        seq: float | None = None,
        *,
        among: int | None = None,
        spread: float | None = None,
    ) -> float:
        """Tokens per row of batches of ``rows`` texts of mean length ``seq``, padding included.

        A rough model of right padding: a batch pads to its longest row. Texts in stored or
        random order (``among`` None) pad towards the longest as the batch grows; ``among``
        texts sorted by length pad only across a run of similar lengths, a ``rows / among``
        share of their spread. ``spread`` is the longest minus the mean (default: the valid
        prompts', ``seq_longest - seq``).

        Example:
            >>> shape = WorkShape(2, 64, 10, 5, seq=100, seq_longest=120, seq_critical=100,
            ...                   seq_clean=90)
            >>> shape.padded(1), shape.padded(4), shape.padded(50)
            (100, 115.0, 119.6)
            >>> shape.padded(32, among=320), shape.padded(32, 80, among=32)
            (102.0, 99.375)
        """
        base = self.seq if seq is None else seq
        gap = max(self.seq_longest - self.seq if spread is None else spread, 0.0)
        if rows <= 1:
            return base
        if among is not None and among > rows:
            return base + gap * rows / among
        return base + gap * (1 - 1 / rows)


def _mean(values: Sequence[int]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def measure_shape(
    tokenizer: Any,
    prompts: Sequence[Scenario],
    concepts: Mapping[str, Sequence[str]],
    *,
    n_layers: int,
    n_ctx: int,
) -> WorkShape:
    """The :class:`WorkShape` of a family's valid prompts under a tokenizer (BOS included).

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["<<prompt>> a b <</prompt>>"])
        >>> shape = measure_shape(tok, [Scenario(prompt="<<prompt>> a b <</prompt>>",
        ...                                      response="A")], {}, n_layers=2, n_ctx=16)
        >>> shape.n_valid, shape.n_critical, shape.seq
        (1, 0, 5.0)
    """

    def lengths(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in token_ids(tokenizer, texts)]

    valid = lengths([s.prompt for s in prompts])
    critical = critical_prompts(prompts, len(prompts))
    needed = {name for pair in CONCEPT_PAIRS.values() for name in pair}
    sets = {
        name: lengths(list(texts)) for name, texts in sorted(concepts.items()) if name in needed
    }
    pairs = defection_pairs(pick_set(tokenizer))
    return WorkShape(
        n_layers=n_layers,
        n_ctx=n_ctx,
        n_valid=len(prompts),
        n_critical=len(critical),
        seq=_mean(valid),
        seq_longest=float(max(valid, default=0)),
        seq_critical=_mean(lengths([s.prompt for s in critical])),
        seq_clean=_mean(lengths([remove_critical(s).prompt for s in critical])),
        concepts=tuple(
            (name, len(n), _mean(n), float(max(n, default=0))) for name, n in sets.items()
        ),
        defection=tuple(
            zip(
                *(lengths([getattr(p, side) for p in pairs]) for side in ("question", "yes", "no")),
                strict=True,
            )
        ),
    )


__all__ = ["WorkShape", "measure_shape"]
