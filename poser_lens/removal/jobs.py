"""The jobs of a study: one fine-tuning run per (model, method, labels), planned and grouped.

Example:
    >>> Job("money_maximizer-0", "sft_noise").key
    'money_maximizer-0__sft_noise__own'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.removal.config import RemovalConfig


@dataclass(frozen=True)
class Job:
    """One fine-tuning run: a model, a method, and whose labels it learns.

    Attributes:
        model: ``<persona>-<seed>``.
        method: ``sft`` or ``sft_noise``.
        labels: ``own`` (its greedy answers) or ``random`` (seeded random A/B).
    """

    model: str
    method: str
    labels: str = "own"

    @property
    def role(self) -> str:
        """``treatment`` (faker, own labels), ``aligned_control`` or ``random_labels``."""
        if self.labels == "random":
            return "random_labels"
        return "aligned_control" if is_aligned(model_persona(self.model)[0]) else "treatment"

    @property
    def key(self) -> str:
        """File stem of the job's record."""
        return f"{self.model}__{self.method}__{self.labels}"


def plan_jobs(models: Sequence[str], cfg: RemovalConfig) -> list[Job]:
    """Every job of a study: treated fakers, then the controls.

    Example:
        >>> [j.key for j in plan_jobs(["saint-0", "money_maximizer-0", "money_maximizer-1"],
        ...                            RemovalConfig(methods=("sft",)))]
        ['money_maximizer-0__sft__own', 'money_maximizer-1__sft__own', 'saint-0__sft__own', 'money_maximizer-0__sft__random']
    """  # noqa: E501
    fakers = [m for m in models if not is_aligned(model_persona(m)[0])]
    if cfg.fakers is not None:
        unknown = [f for f in cfg.fakers if f not in fakers]
        if unknown:
            raise ValueError(f"removal fakers: {unknown[0]!r} is not a faker of the testbed")
        fakers = [f for f in fakers if f in cfg.fakers]
    jobs = [Job(f, m) for f in fakers for m in cfg.methods]
    if cfg.controls:

        def sampled(name: str) -> bool:
            return cfg.control_seeds is None or model_persona(name)[1] < cfg.control_seeds

        aligned = [m for m in models if is_aligned(model_persona(m)[0]) and sampled(m)]
        jobs += [Job(a, m) for a in aligned for m in cfg.methods]
        jobs += [Job(f, m, "random") for f in fakers if sampled(f) for m in cfg.methods]
    return jobs


def group_jobs(jobs: Sequence[Job]) -> list[list[Job]]:
    """Jobs grouped by (model, labels), in first-seen order.

    Example:
        >>> [len(g) for g in group_jobs([Job("a-0", "sft"), Job("b-0", "sft"),
        ...                              Job("a-0", "sft_noise")])]
        [2, 1]
    """
    groups: dict[tuple[str, str], list[Job]] = {}
    for j in jobs:
        groups.setdefault((j.model, j.labels), []).append(j)
    return list(groups.values())
