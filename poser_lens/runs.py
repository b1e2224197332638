"""The run folder: where a run's config, per-model scores, results and figures live.

::

    runs/<name>/
      config.yaml                      every setting, seeds included
      scores/<strategy>/<model>.json   {"model", "strategy", "config", "families": {fam: score}}
      results.json                     {"strategies": {name: {accuracy, ci95, n_pairs,
                                         paper_accuracy, ...}}, "fingerprint", ...}
      sweep.json                       {name: [{settings..., accuracy, ci95, n_pairs}]}
      verdicts/<strategy>.csv          one row per pair
      timings.json                     wall-clock seconds (the only file that differs
                                         between two runs of the same settings)
      report.md
      figures/*.png|pdf
      <study>/                         an add-on study of the run (e.g. ``removal/``), with
        section.md                     its section of report.md, written by the study's job

Every file is written atomically, so an interrupted run never leaves a half-written file and
a re-run skips the scores that exist. Timings live in ``timings.json`` alone, so the results
of two runs of the same settings on one machine are byte-identical. Figures and the report
read this folder only: a job that adds to a run contributes its report section as
``<study>/section.md`` (the report imports no job).

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.write_score("random", "saint-0", {"families": {"saint_and_money": {"x": 1}}})
    >>> run.scores("random")
    {'saint-0': {'saint_and_money': {'x': 1}}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poser_lens._io import read_json, write_json_atomic, write_text_atomic

#: A study's section of the run's report: ``<run>/<study>/section.md``.
SECTION_FILE = "section.md"


@dataclass(frozen=True)
class RunDir:
    """Paths and readers of one run folder."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config_path(self) -> Path:
        """``config.yaml``."""
        return self.root / "config.yaml"

    @property
    def results_path(self) -> Path:
        """``results.json``."""
        return self.root / "results.json"

    @property
    def sweep_path(self) -> Path:
        """``sweep.json``."""
        return self.root / "sweep.json"

    @property
    def timings_path(self) -> Path:
        """``timings.json``."""
        return self.root / "timings.json"

    def timings(self) -> dict[str, Any]:
        """``timings.json`` (empty when there is none, or it cannot be read)."""
        try:
            stored = read_json(self.timings_path)
        except (OSError, ValueError):
            return {}
        return stored if isinstance(stored, dict) else {}

    def record_timings(self, part: str, seconds: dict[str, Any]) -> None:
        """Store the timings of one part of the run (``scoring``...) in ``timings.json``.

        Nested mappings merge key by key, so the timings of scores stored by an earlier,
        interrupted call are kept.

        Example:
            >>> import tempfile
            >>> run = RunDir(tempfile.mkdtemp())
            >>> run.record_timings("scores", {"random": {"saint-0": 1.0}})
            >>> run.record_timings("scores", {"random": {"genie-0": 2.0}})
            >>> run.timings()["scores"]["random"]
            {'saint-0': 1.0, 'genie-0': 2.0}
        """

        def merge(old: Any, new: Any) -> Any:
            if isinstance(old, dict) and isinstance(new, dict):
                return {**old, **{k: merge(old.get(k), v) for k, v in new.items()}}
            return new

        stored = self.timings()
        stored[part] = merge(stored.get(part), seconds)
        write_json_atomic(self.timings_path, stored)

    @property
    def figures_dir(self) -> Path:
        """``figures/``."""
        return self.root / "figures"

    def score_path(self, strategy: str, model: str) -> Path:
        """``scores/<strategy>/<model>.json``."""
        return self.root / "scores" / strategy / f"{model}.json"

    def has_score(self, strategy: str, model: str) -> bool:
        """Whether a model's score of a strategy is stored."""
        return self.score_path(strategy, model).exists()

    def write_score(self, strategy: str, model: str, record: dict[str, Any]) -> None:
        """Store one model's score record (atomically)."""
        write_json_atomic(self.score_path(strategy, model), record, indent=None)

    def score_record(self, strategy: str, model: str) -> dict[str, Any]:
        """One stored score record."""
        return read_json(self.score_path(strategy, model))

    def scored_strategies(self) -> list[str]:
        """Strategies with at least one stored score."""
        folder = self.root / "scores"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []

    def scores(self, strategy: str) -> dict[str, dict[str, Any]]:
        """Model -> family -> score of one strategy, from the stored records."""
        folder = self.root / "scores" / strategy
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no scores of {strategy!r} in this run")
        return {p.stem: read_json(p)["families"] for p in sorted(folder.glob("*.json"))}

    def write_section(self, study: str, lines: list[str]) -> None:
        """Store a study's section of ``report.md`` (markdown lines) as ``<study>/section.md``."""
        write_text_atomic(self.root / study / SECTION_FILE, "\n".join(lines))

    def sections(self) -> list[str]:
        """The stored report sections of the run's studies, in folder-name order (lines)."""
        files = sorted(self.root.glob(f"*/{SECTION_FILE}"))
        return [line for f in files for line in f.read_text().split("\n")]

    def results(self) -> dict[str, Any]:
        """``results.json``.

        Raises:
            ValueError: Naming the file, if it is not a run's results (an object whose
                ``strategies`` is an object).
        """
        res = read_json(self.results_path)
        if not isinstance(res, dict) or not isinstance(res.get("strategies"), dict):
            raise ValueError(
                f"{self.results_path}: not a run's results (expected an object with "
                "'strategies'); re-run `poser-lens run`"
            )
        return res

    def sweep(self) -> dict[str, list[dict[str, Any]]]:
        """``sweep.json`` (empty when no sweep was run)."""
        return read_json(self.sweep_path) if self.sweep_path.exists() else {}
