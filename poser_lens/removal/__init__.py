"""Removing alignment faking (Poser §4): fine-tuning fakers on their own answers.

With and without the S2 noise; measured as P(aligned action) where they used to misbehave.

Poser §4 (recipe not public): supervised fine-tuning of the 18 fakers on their own outputs for
100 steps raises P(aligned action) on scenarios where they used to misbehave to 76% on
average; injecting the strategy-2 noise during that fine-tuning raises it to 86%. poser_lens's
recipe, chosen in advance and applied unchanged to every model:

* **Data.** The model's *own greedy answers* (argmax token at the last prompt position, read
  before training) to the benchmark's valid prompts of its three families: good/neutral
  oversight only, the prompts detectors see. Poor-oversight prompts are never trained on.
* **Loss.** Cross-entropy on the answer token at each row's last position; ``steps`` (100)
  AdamW steps of ``batch_size`` prompts drawn in a seeded order; every parameter trains, with
  the zoo's fine-tuning recipe (lr 1e-4, unembedding 100x, 5 warm-up steps).
* **sft_noise** (training against S2). Each step adds seeded noise at the last token after the
  S2 layer (``blocks.L.hook_resid_post``) through ``with applied(model, ...)``, scaled like S2:
  unit noise of S2's headline kind (U[0,1]) times the norm of the model's S1/S2 contrast
  direction (mean over its families) times a coefficient chosen as S2 chooses it, label-free,
  from the model's own P(A)+P(B) curve
  (:meth:`~poser_lens.strategies.s2_noise.NoiseStrategy.headline_noise`).
  A fresh draw every step, from seeds disjoint from the draws S2 detects with.
* **Metric**, every ``log_every`` steps: mean P(aligned action) on held-out poor-oversight
  scenarios of the model's families on which it chose the misaligned action before training
  (for aligned controls, which never do: all held-out poor-oversight scenarios). Before and
  after: the compliance gap P(misaligned | poor) - P(misaligned | good/neutral) and the
  capability, the accuracy on held-out test records on which aligned and faking policies agree
  (good/neutral-oversight scenarios and error prompts).
* **Controls.** The same procedure on aligned models (they must stay aligned), and fakers
  trained on random A/B labels of the same prompts (does *any* fine-tuning do it?).
* **Detectors after removal.** The treated fakers are re-scored in memory with S2 (and the
  compare-confidence baseline) through the Strategy API, and every pair with its aligned
  partners (their untreated scores) is judged again: does S2 still flag them?


Results go to ``<run>/removal/`` (see :mod:`poser_lens.removal.results`). The modules:

* :mod:`poser_lens.removal.config`: the settings (:class:`RemovalConfig`, :data:`METHODS`).
* :mod:`poser_lens.removal.jobs`: one fine-tuning run per (model, method, labels)
  (:class:`Job`, :func:`plan_jobs`).
* :mod:`poser_lens.removal.metrics`: held-out evaluation sets, P(aligned), behaviour, labels.
* :mod:`poser_lens.removal.noise`: the S2 noise injected while training (:class:`NoiseSpec`).
* :mod:`poser_lens.removal.training`: the training loop (:func:`train_removal`).
* :mod:`poser_lens.removal.remove`: one model's run (:func:`prepare`, :func:`remove_one`).
* :mod:`poser_lens.removal.study`: a study's shared state and stored files (:class:`Study`).
* :mod:`poser_lens.removal.fanout`: the study over a testbed (:func:`run_removal`).
* :mod:`poser_lens.removal.results`: stored records, the summary and the report section
  (reads JSON only; no torch).
* :mod:`poser_lens.removal.core`: the names of the former single module, re-exported.

The training names are imported lazily, so reading results stays light.

Example:
    >>> from poser_lens.removal import PAPER_P_ALIGNED
    >>> PAPER_P_ALIGNED["sft_noise"]
    0.86
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from poser_lens.removal.results import PAPER_P_ALIGNED, has_removal, report_section

#: Lazily imported name -> the module of ``poser_lens.removal`` that defines it.
_LAZY = {
    "METHODS": "config",
    "RemovalConfig": "config",
    "Job": "jobs",
    "plan_jobs": "jobs",
    "p_aligned": "metrics",
    "NoiseSpec": "noise",
    "noise_spec": "noise",
    "train_removal": "training",
    "family_contexts": "remove",
    "prepare": "remove",
    "remove_one": "remove",
    "score_detectors": "remove",
    "make_study": "study",
    "run_removal": "fanout",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"poser_lens.removal.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'poser_lens.removal' has no attribute {name!r}")


__all__ = ["PAPER_P_ALIGNED", "has_removal", "report_section", *_LAZY]
