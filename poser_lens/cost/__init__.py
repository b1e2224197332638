"""What a run costs: FLOPs, memory and wall time per strategy (``poser-lens cost``).

The cost model sits above the strategies, which know nothing of it:

* :mod:`~poser_lens.cost.flops`: the analytic FLOPs of a transformer's forward and backward
  passes (:class:`~poser_lens.cost.flops.Arch`, :class:`~poser_lens.cost.flops.Pass`);
* :mod:`~poser_lens.cost.shape`: what a strategy's work on one (model, family) depends on
  (:class:`~poser_lens.cost.shape.WorkShape`, measured or assumed);
* :mod:`~poser_lens.cost.passes` and :mod:`~poser_lens.cost.declarations`: each strategy's
  work as passes, declared once per strategy and keyed by its name
  (:func:`~poser_lens.cost.declarations.work`); the work strategies share is named by the
  run's memo keys (:mod:`poser_lens.strategies.memo`);
* :mod:`~poser_lens.cost.report`: the paper-scale report (Poser's 36 x LLaMA-13B);
* :mod:`~poser_lens.cost.profile`: torch's profiler count and timing, the tests' and
  ``benchmarks/``' check of the analytic counts.

Example:
    >>> cost_report(CostConfig()).n_contexts
    108
"""

from __future__ import annotations

from poser_lens.cost.declarations import work
from poser_lens.cost.report import (
    COST_TESTBEDS,
    GPUS,
    POSER_FAMILIES,
    CostConfig,
    CostReport,
    FamilyShape,
    Gpu,
    StrategyCost,
    cost_report,
    measured_families,
    pass_memory,
    poser_families,
    shared_total,
    strategy_cost,
)
from poser_lens.cost.shape import WorkShape, measure_shape

__all__ = [
    "COST_TESTBEDS",
    "GPUS",
    "POSER_FAMILIES",
    "CostConfig",
    "CostReport",
    "FamilyShape",
    "Gpu",
    "StrategyCost",
    "WorkShape",
    "cost_report",
    "measure_shape",
    "measured_families",
    "pass_memory",
    "poser_families",
    "shared_total",
    "strategy_cost",
    "work",
]
