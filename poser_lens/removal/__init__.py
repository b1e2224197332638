"""Removing alignment faking (Poser §4): fine-tuning fakers on their own answers.

With and without the S2 noise; measured as P(aligned action) where they used to misbehave.

* :mod:`poser_lens.removal.core`: the recipe (:class:`RemovalConfig`, :func:`train_removal`,
  :func:`remove_one`) and the study over a testbed (:func:`run_removal`).
* :mod:`poser_lens.removal.results`: stored records, the summary and the report section
  (reads JSON only; no torch).

The training names are imported lazily, so reading results stays light.

Example:
    >>> from poser_lens.removal import PAPER_P_ALIGNED
    >>> PAPER_P_ALIGNED["sft_noise"]
    0.86
"""

from __future__ import annotations

from typing import Any

from poser_lens.removal.results import PAPER_P_ALIGNED, has_removal, report_section

_CORE = (
    "METHODS",
    "Job",
    "NoiseSpec",
    "RemovalConfig",
    "plan_jobs",
    "remove_one",
    "run_removal",
    "train_removal",
)


def __getattr__(name: str) -> Any:
    if name in _CORE:
        from poser_lens.removal import core

        return getattr(core, name)
    raise AttributeError(f"module 'poser_lens.removal' has no attribute {name!r}")


__all__ = ["PAPER_P_ALIGNED", "has_removal", "report_section", *_CORE]
