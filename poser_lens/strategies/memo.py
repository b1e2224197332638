"""The keys of a context's memo: the work strategies of one (model, family) share.

:meth:`ModelContext.cached <poser_lens.strategies.base.ModelContext.cached>` stores each
shared piece of work under one of these typed keys, and the cost model
(:mod:`poser_lens.cost`) names the same work by the same key (:meth:`MemoKey.shared`), so the
two cannot drift apart: a pass the cost counts once between strategies is the entry the run
computes once. Two keys are equal when their class and fields are (a frozen dataclass), so
keys of different kinds never collide.

A field marked :data:`PER_CONTEXT` (the family's seed) is the same for every strategy of one
context; the cost model, which counts the work of one context, leaves it out of the shared
name.

Example:
    >>> CriticalForwards(50, 64) == CriticalForwards(50, 64) != ContrastResiduals(50, (64,))
    True
    >>> CriticalForwards(50, 64).shared()
    'CriticalForwards(n_prompts=50, batch_size=64)'
    >>> InitialHeldout(16, seed=3).shared() == InitialHeldout.shared_of(n_heldout=16)
    True
    >>> LastResiduals().shared("valid")
    'LastResiduals():valid'
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: Field metadata of a key field fixed by the context (left out of :meth:`MemoKey.shared`).
PER_CONTEXT = {"per_context": True}


@dataclass(frozen=True)
class MemoKey:
    """A key of :attr:`ModelContext.memo <poser_lens.strategies.base.ModelContext.memo>`."""

    @classmethod
    def shared_of(cls, part: str = "", **values: Any) -> str:
        """The name of this key's work for the cost model (``Pass.shared``), from its fields.

        Args:
            part: A part of the work stored under one key, e.g. one side of the contrast
                pairs, or a set of texts of :class:`LastResiduals`.
            **values: Every field of the key not marked :data:`PER_CONTEXT`.

        Raises:
            TypeError: If ``values`` are not exactly those fields.

        Example:
            >>> ContrastResiduals.shared_of("clean", n_pairs=15, grid=(5, 15))
            'ContrastResiduals(n_pairs=15, grid=(5, 15)):clean'
        """
        names = [f.name for f in fields(cls) if not f.metadata.get("per_context")]
        if sorted(values) != sorted(names):
            raise TypeError(f"{cls.__name__}: expected fields {names}, got {sorted(values)}")
        text = f"{cls.__name__}({', '.join(f'{n}={values[n]!r}' for n in names)})"
        return f"{text}:{part}" if part else text

    def shared(self, part: str = "") -> str:
        """The name of this key's work for the cost model (see :meth:`shared_of`)."""
        kept = {
            f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("per_context")
        }
        return self.shared_of(part, **kept)


@dataclass(frozen=True)
class LastResiduals(MemoKey):
    """Text -> its last-token residuals at every block (one dict, filled per text).

    Strategies reading the same texts share their forwards
    (:func:`~poser_lens.strategies.common.last_residuals`); the cost names each set of texts
    as a ``part`` (``valid``, ``counterfactual``, ``concept:<name>``).
    """


@dataclass(frozen=True)
class CriticalForwards(MemoKey):
    """The plain forwards of the first prompts with a critical fact, in stored batches.

    (:func:`~poser_lens.strategies.common.critical_forwards`: S6's attention and the patching
    detector's clean readout.)
    """

    n_prompts: int
    batch_size: int


@dataclass(frozen=True)
class ContrastResiduals(MemoKey):
    """The contrast pairs' residuals at every block of a grid (one forward per side).

    (:func:`~poser_lens.strategies.steering.directions.cached_direction`: S1 and S2 with the
    same grid; the cost names the sides ``critical`` and ``clean`` as parts.)
    """

    n_pairs: int
    grid: tuple[int, ...]


@dataclass(frozen=True)
class ContrastDirection(MemoKey):
    """The contrast direction at one block of a grid, and the evaluation prompts."""

    layer: int
    n_pairs: int
    grid: tuple[int, ...]


@dataclass(frozen=True)
class InitialHeldout(MemoKey):
    """P(flipped) of strategy 3's held-out prompts before any update (every curve's start).

    (:func:`~poser_lens.strategies.s3_learning_speed.initial_heldout`.)
    """

    n_heldout: int
    seed: int = field(metadata=PER_CONTEXT)


__all__ = [
    "PER_CONTEXT",
    "ContrastDirection",
    "ContrastResiduals",
    "CriticalForwards",
    "InitialHeldout",
    "LastResiduals",
    "MemoKey",
]
