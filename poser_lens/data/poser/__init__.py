"""Read (and write back) the data of a Poser checkout.

ROOT is either a Poser checkout (the folder holding ``data/`` and ``model_pairs.json``) or its
``data/`` folder; :func:`resolve_root` tells them apart. The parts read here:

- ``data/benchmark/{family}.json``: the valid data of each family pair (:func:`load_benchmark`);
- ``data/training/{persona}/{train-0..5,test}.json``: training splits (:func:`load_training`);
- ``data/policy_definitions/{persona}/test.json``: diverging scenarios
  (:func:`load_policy_definitions`);
- ``model_pairs.json``: the aligned/faker pairs (:func:`load_model_pairs`);
- ``src/detection_strategies/concepts/*.json``: concept examples (:func:`load_concepts`).

Absent parts load as empty containers. A record the code cannot use raises
:class:`PoserFormatError`, whose one-line message names the file and the record index.

Names are read however the release spells them: model names by
:func:`~poser_lens.data.schema.model_name` (``saint_0``, ``../models/together/saint-0``),
benchmark file names by :func:`~poser_lens.data.schema.family_of` (``Saint-and-Fitness.json``),
persona folders by :func:`~poser_lens.data.schema.persona_name` (``Truth-Teller``), training
splits as ``train-<i>`` or ``train_<i>``. Two files or folders that stand for one name are
refused (one line naming the folder and both).

The package re-exports the public names of its modules, one per responsibility:

- :mod:`~poser_lens.data.poser.records`: one record <-> one :class:`Scenario` (and its round
  trip, the action/template layout), one JSON file of records, :class:`PoserFormatError`;
- :mod:`~poser_lens.data.poser.layout`: where the parts of a checkout are (:class:`PoserPaths`,
  :func:`resolve_root`, :func:`benchmark_files`);
- :mod:`~poser_lens.data.poser.loaders`: the benchmark, training and policy-definition loaders;
- :mod:`~poser_lens.data.poser.pairs`: :class:`ModelPair` and ``model_pairs.json``;
- :mod:`~poser_lens.data.poser.concepts`: the concept example files;
- :mod:`~poser_lens.data.poser.summary`: the counts of ``poser-lens data inspect``.

Example:
    >>> rec = {"prompt": "<<prompt>>Hi<</prompt>>", "response": "error"}
    >>> s = scenario_from_record(rec, where="x.json", index=0, family=None, persona=None)
    >>> s.kind, scenario_to_record(s) == rec
    ('incomplete', True)
"""

from poser_lens.data.poser.concepts import load_concepts
from poser_lens.data.poser.layout import PoserPaths, benchmark_files, resolve_root
from poser_lens.data.poser.loaders import load_benchmark, load_policy_definitions, load_training
from poser_lens.data.poser.pairs import (
    ModelPair,
    check_valid_data,
    load_model_pairs,
    write_model_pairs,
)
from poser_lens.data.poser.records import (
    PathLike,
    PoserFormatError,
    load_scenarios,
    scenario_from_record,
    scenario_to_record,
    write_scenarios,
)
from poser_lens.data.poser.summary import FileSummary, inspect_root, summarize_files

__all__ = [
    "FileSummary",
    "ModelPair",
    "PathLike",
    "PoserFormatError",
    "PoserPaths",
    "benchmark_files",
    "check_valid_data",
    "inspect_root",
    "load_benchmark",
    "load_concepts",
    "load_model_pairs",
    "load_policy_definitions",
    "load_scenarios",
    "load_training",
    "resolve_root",
    "scenario_from_record",
    "scenario_to_record",
    "summarize_files",
    "write_model_pairs",
    "write_scenarios",
]
