"""The tiny zoo: one shared base model and 6 personas x N seeds fine-tuned from it.

Like Poser's 36 fine-tunes of LLaMA-13B, every persona model starts from the same base
(trained once as a language model on our scenario text); the seed drives the fine-tuning
sample and order. ``from_scratch=True`` trains persona models from random weights instead,
so the difference the shared base makes can be measured.

A zoo lives in a folder keyed by the content hash of its config (default under the user
cache dir), so a second build with the same settings reuses it; every model folder is
written atomically, so an interrupted build resumes where it stopped, and each build step
(tokenizer, base, each stack of models, benchmark) runs under a file lock, so builds sharing
a cache do each step once::

    <zoo>/zoo_config.json  tokenizer.json ...  base/  models/<persona>-<seed>/
    <zoo>/zoo.json         one row per model with its accuracies and compliance gap
    <zoo>/poser/           the benchmark in Poser's layout (data/benchmark/*.json,
                           model_pairs.json) + benchmark_report.json
    <zoo>/.locks/          the build steps' locks

A model's weights depend only on the key's settings, its persona and seed, and the stack it
is fine-tuned in (:meth:`ZooConfig.stacks`), which the key fixes: whatever else a build of the
folder trained, and in whatever order, a model folder holds the same weights (on one machine).

The package re-exports the public names of its modules, one per responsibility:

- :mod:`~poser_lens.models.zoo.config`: :class:`ZooConfig` (the key, the stacks, the
  valid-prompt threshold);
- :mod:`~poser_lens.models.zoo.data`: the generated data, the base corpus, the tokenizer and
  the calibration pool;
- :mod:`~poser_lens.models.zoo.metrics`: a persona model's held-out metrics and benchmark
  probabilities;
- :mod:`~poser_lens.models.zoo.train`: training the base and the persona models (stack by
  stack, fanned out over workers);
- :mod:`~poser_lens.models.zoo.build`: the build's steps in order, ``zoo.json`` and the
  benchmark, loading a model;
- :mod:`~poser_lens.models.zoo.notebook`: the notebooks' small zoo.

Example:
    >>> cfg = ZooConfig(seeds=12)  # two stacks of 6 per persona: the first is the default's
    >>> len(cfg.key()) == 12 and cfg.key() == ZooConfig().key() != ZooConfig(seeds=1).key()
    True
"""

from poser_lens.models.zoo.build import (
    build_zoo,
    finish_zoo,
    load_zoo_model,
    read_zoo_row,
)
from poser_lens.models.zoo.config import (
    DEFAULT_STACK,
    RECIPES,
    ZOO_FORMAT,
    Confidence,
    ZooConfig,
)
from poser_lens.models.zoo.data import (
    CALIBRATION_SEED_OFFSET,
    base_corpus,
    calibration_pool,
    make_tokenizer,
    zoo_tokenizer,
)
from poser_lens.models.zoo.metrics import (
    Reader,
    benchmark_probs,
    evaluate_persona,
)
from poser_lens.models.zoo.notebook import (
    NOTEBOOK_ZOO,
    notebook_zoo,
    notebook_zoo_dir,
)
from poser_lens.models.zoo.train import (
    BASE_CHECK_EVERY,
    base_check_steps,
    build_base,
    build_persona_models,
)

__all__ = [
    "BASE_CHECK_EVERY",
    "CALIBRATION_SEED_OFFSET",
    "DEFAULT_STACK",
    "NOTEBOOK_ZOO",
    "RECIPES",
    "ZOO_FORMAT",
    "Confidence",
    "Reader",
    "ZooConfig",
    "base_check_steps",
    "base_corpus",
    "benchmark_probs",
    "build_base",
    "build_persona_models",
    "build_zoo",
    "calibration_pool",
    "evaluate_persona",
    "finish_zoo",
    "load_zoo_model",
    "make_tokenizer",
    "notebook_zoo",
    "notebook_zoo_dir",
    "read_zoo_row",
    "zoo_tokenizer",
]
