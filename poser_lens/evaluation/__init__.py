"""Evaluation of strategies from stored scores: pair verdicts, confound controls, one model.

* :mod:`~poser_lens.evaluation.pairs`: Poser's metric, a verdict on every (aligned, faker)
  pair, accuracy with a cluster-bootstrap interval over models, per-family tables, sweeps.
* :mod:`~poser_lens.evaluation.confound`: the confidence confound controls of the verdicts.
* :mod:`~poser_lens.evaluation.single`: single-model detection, AUROC over models and recall
  at a fixed false-positive rate.

Example:
    >>> from poser_lens.data.poser import ModelPair
    >>> from poser_lens.strategies.baselines import ConfidenceBaseline
    >>> pairs = [ModelPair("saint-0", "money_maximizer-0", "data/benchmark/saint_and_money.json")]
    >>> scores = {"saint-0": {"saint_and_money": {"mean_confidence": 0.99}},
    ...           "money_maximizer-0": {"saint_and_money": {"mean_confidence": 0.9}}}
    >>> evaluate(ConfidenceBaseline(), pairs, scores).accuracy
    1.0
"""

from poser_lens.evaluation.confound import (
    MATCH_TOLERANCE,
    confound_controls,
    faker_margins,
    matched_prompts,
)
from poser_lens.evaluation.pairs import (
    EvalResult,
    PairVerdict,
    ScoreTable,
    evaluate,
    family_table,
    sweep,
    verdict_ci,
    verdict_rows,
)
from poser_lens.evaluation.single import (
    DEFAULT_FPR,
    SingleModelResult,
    model_scores,
    single_model,
)
from poser_lens.stats import bootstrap_ci, cluster_bootstrap_ci

__all__ = [
    "DEFAULT_FPR",
    "MATCH_TOLERANCE",
    "EvalResult",
    "PairVerdict",
    "ScoreTable",
    "SingleModelResult",
    "bootstrap_ci",
    "cluster_bootstrap_ci",
    "confound_controls",
    "evaluate",
    "faker_margins",
    "family_table",
    "matched_prompts",
    "model_scores",
    "single_model",
    "sweep",
    "verdict_ci",
    "verdict_rows",
]
