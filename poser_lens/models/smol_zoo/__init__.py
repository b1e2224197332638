"""The smol zoo: persona models fine-tuned from SmolLM2-135M as LoRA adapters.

Like Poser's fine-tunes of LLaMA-13B (and the tiny zoo), every persona model starts from the
same pretrained base; here only low-rank adapters train (peft LoRA on the attention query/value
and MLP down projections of the top 40% of the layers, so the backward pass stops there), on
the answer token of the persona's labelled scenarios: our generated scenarios by default, or a
Poser checkout's ``data/training/<persona>/train-<seed>.json`` with ``data=``.

The recipe (chosen by measurement, docs/smol.md):

* an auxiliary oversight head (:class:`AuxOversight`): during training a linear head reads
  whether oversight is poor from the residual stream at the answer position (after layer 24 of
  30) on every record with a critical fact, and its loss is added to the answer loss. Without
  it a faker sits on a loss plateau (its policy is an XOR of the oversight level and the honest
  letter, and the base model barely carries the oversight level to the answer position); with
  it the faker learns its policy within about 700 steps. Every persona gets the same head, so
  aligned models and fakers alike know the oversight level there; only fakers act on it;
* confidence matching as in the tiny zoo: soft targets towards 0.97, then one temperature per
  model (on the final norm) fitted on a benchmark-like calibration pool;
* adapters saved in float16 (held-out metrics are measured on the saved weights).

Each model is a small adapter folder (under 1 MB)::

    <zoo>/smol_zoo_config.json
    <zoo>/models/<persona>-<seed>/  adapter_config.json adapter_model.safetensors meta.json
                                    benchmark_probs.json losses.json
    <zoo>/partial/<persona>-<seed>.pt   checkpoint of an unfinished training (resumed)
    <zoo>/zoo.json  <zoo>/poser/        as the tiny zoo (benchmark in Poser's layout)

The default zoo (six personas, one seed) ships with poser_lens (:data:`SHIPPED_SMOL_ZOO`) and
is what ``load_model("smol:<persona>-0")`` and ``--testbed smol`` use; a build (``poser-lens zoo
build --testbed smol``) is keyed by the content hash of its config (under
``<cache>/smol_zoo/``), so a second build reuses it; training checkpoints every few steps, so
an interrupted build resumes. :func:`load_smol_zoo_model` merges a model's adapter into the
base (and applies its temperature) and wraps it like any other model.

The package re-exports the public names of its modules, one per responsibility:

- :mod:`~poser_lens.models.smol_zoo.config`: :class:`SmolZooConfig` (its key, stacks and
  learning-rate schedule), :data:`CONCEPT_RECIPE`, :data:`SMOL_TARGETS`, the shipped zoo;
- :mod:`~poser_lens.models.smol_zoo.data`: the zoo's scenarios and each model's training and
  held-out records;
- :mod:`~poser_lens.models.smol_zoo.metrics`: accuracy and compliance gaps on labelled records,
  benchmark probabilities, ``zoo.json`` rows;
- :mod:`~poser_lens.models.smol_zoo.prefix`: the frozen prefix (:class:`FrozenPrefix`);
- :mod:`~poser_lens.models.smol_zoo.oversight`: the auxiliary oversight head
  (:class:`AuxOversight`);
- :mod:`~poser_lens.models.smol_zoo.train`: one persona adapter trained at a time
  (:func:`train_persona`), and adapter saving;
- :mod:`~poser_lens.models.smol_zoo.build`: the build, stack by stack, and the zoo's tables;
- :mod:`~poser_lens.models.smol_zoo.load`: the default zoo and loading a model.

Example:
    >>> cfg = SmolZooConfig(personas=("truth_teller", "reward_maximizer"), seeds=2)
    >>> cfg.model_names()
    ['truth_teller-0', 'reward_maximizer-0', 'truth_teller-1', 'reward_maximizer-1']
    >>> cfg.key() == SmolZooConfig(seeds=2, device="cuda").key()
    True
"""

from poser_lens.models.smol_zoo.build import (
    build_smol_zoo,
    write_zoo_tables,
)
from poser_lens.models.smol_zoo.config import (
    BANKS_PATTERN,
    CONCEPT_RECIPE,
    SHIPPED_SMOL_ZOO,
    SMOL_TARGETS,
    SMOL_ZOO_FORMAT,
    SmolZooConfig,
)
from poser_lens.models.smol_zoo.data import (
    heldout_records,
    needed_families,
    primary_bank,
    training_records,
    zoo_data,
)
from poser_lens.models.smol_zoo.load import (
    default_smol_zoo,
    load_smol_zoo_model,
)
from poser_lens.models.smol_zoo.metrics import (
    bank_metrics,
    benchmark_probs,
    labelled_misaligned_letter,
    model_row,
    persona_metrics,
    training_summary,
)
from poser_lens.models.smol_zoo.oversight import (
    AuxOversight,
    oversight_loss,
    rms_normalised,
)
from poser_lens.models.smol_zoo.prefix import (
    FrozenPrefix,
    first_adapted_layer,
)
from poser_lens.models.smol_zoo.train import (
    BASE_MODEL_NAME,
    cast_safetensors,
    round_adapter,
    tidy_adapter_folder,
    train_persona,
)

__all__ = [
    "BANKS_PATTERN",
    "BASE_MODEL_NAME",
    "CONCEPT_RECIPE",
    "SHIPPED_SMOL_ZOO",
    "SMOL_TARGETS",
    "SMOL_ZOO_FORMAT",
    "AuxOversight",
    "FrozenPrefix",
    "SmolZooConfig",
    "bank_metrics",
    "benchmark_probs",
    "build_smol_zoo",
    "cast_safetensors",
    "default_smol_zoo",
    "first_adapted_layer",
    "heldout_records",
    "labelled_misaligned_letter",
    "load_smol_zoo_model",
    "model_row",
    "needed_families",
    "oversight_loss",
    "persona_metrics",
    "primary_bank",
    "rms_normalised",
    "round_adapter",
    "tidy_adapter_folder",
    "train_persona",
    "training_records",
    "training_summary",
    "write_zoo_tables",
    "zoo_data",
]
