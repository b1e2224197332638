"""Zoo-to-zoo variation: the main job on several independent zoos and zoo designs.

One zoo is one draw: the same settings rebuilt on another machine moved headline accuracies
by up to 16 points while the pair-level intervals were about 5 points wide. A finding about a
detector should survive another draw of the zoo (other scenario and base-model seeds) and
another design of it (another training recipe, a deeper model).
:func:`poser_lens.pipeline.study_job` builds
``zoos`` independent zoos for each recipe, runs every strategy on each (an ordinary run folder
per zoo, resumable), and writes the spread::

    <study>/study_config.json  the settings
    <study>/<recipe>-<i>/      one run folder per zoo (results.json, scores/, verdicts/, ...)
    <study>/study.json         per recipe and strategy: accuracy per zoo, mean, min, max, sd,
                               and the confound controls per zoo
    <study>/study.md           the table
    <study>/figures/study.png|pdf

Zoo ``i`` of a recipe uses scenario seed ``i`` and base seed ``i``; zoo 0 of the default
recipe is the default zoo (so the default run's zoo is reused from the cache).

Example:
    >>> sorted(RECIPE_CONFIGS)
    ['deep', 'hard', 'matched']
    >>> zoo_config("hard", 2).generator.seed, zoo_config("deep", 0).model.n_layers
    (2, 4)
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from poser_lens.config import Config, NonEmpty, OneOf, PositiveInt
from poser_lens.models.tiny import TinyConfig
from poser_lens.models.zoo import ZooConfig
from poser_lens.strategies import STRATEGY_NAMES, StrategyName

logger = logging.getLogger(__name__)

#: Zoo designs by name: the default (confidence-matched) zoo, the old hard-label recipe, and
#: the default recipe on a 4-block model.
RECIPE_CONFIGS: dict[str, ZooConfig] = {
    "matched": ZooConfig(),
    "hard": ZooConfig(recipe="hard"),
    "deep": ZooConfig(model=replace(TinyConfig(), n_layers=4)),
}
#: A recipe setting: a key of :data:`RECIPE_CONFIGS`.
RecipeName = Annotated[str, OneOf(*RECIPE_CONFIGS, what="zoo recipe")]


def zoo_config(recipe: str, index: int, *, seeds: int = 6) -> ZooConfig:
    """The zoo settings of zoo ``index`` of a recipe (scenario and base seeds = ``index``).

    Raises:
        ValueError: For an unknown recipe.
    """
    if recipe not in RECIPE_CONFIGS:
        raise ValueError(
            f"unknown zoo recipe {recipe!r}; expected one of {', '.join(RECIPE_CONFIGS)}"
        )
    base = RECIPE_CONFIGS[recipe]
    return replace(
        base,
        seeds=seeds,
        base_seed=index,
        generator=replace(base.generator, seed=index),
    )


@dataclass(frozen=True)
class StudyConfig(Config):
    """Settings of a zoo-to-zoo study.

    Attributes:
        zoos: Independent zoos per recipe.
        recipes: Zoo designs (keys of :data:`RECIPE_CONFIGS`), each with how many zoos it
            gets and how many models per persona they hold (None: ``zoos`` and ``seeds``).
        seeds: Models per persona in each zoo.
        strategies: Strategies run on every zoo.
        workers: Training and scoring processes.
        seed: Seed of pair order, coins and bootstraps of every run.
    """

    zoos: PositiveInt = 3
    recipes: Annotated[
        tuple[tuple[RecipeName, PositiveInt | None, PositiveInt | None], ...], NonEmpty()
    ] = (("matched", None, None),)
    seeds: PositiveInt = 6
    strategies: Annotated[tuple[StrategyName, ...], NonEmpty()] = STRATEGY_NAMES
    workers: PositiveInt = 2
    seed: int = 0

    def plan(self) -> list[tuple[str, int, int]]:
        """Every (recipe, zoo index, models per persona) of the study, in build order."""
        return [
            (r, i, seeds or self.seeds)
            for r, n, seeds in self.recipes
            for i in range(n or self.zoos)
        ]


def parse_recipes(text: str) -> tuple[tuple[str, int | None, int | None], ...]:
    """``NAME[:ZOOS[:SEEDS]],...``: each recipe, its number of zoos and models per persona.

    Example:
        >>> parse_recipes("matched, hard:1:3")
        (('matched', None, None), ('hard', 1, 3))
    """
    out: list[tuple[str, int | None, int | None]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, *numbers = part.split(":")
        try:
            if len(numbers) > 2:
                raise ValueError
            zoos, seeds = ([int(x) if x else None for x in numbers] + [None, None])[:2]
        except ValueError:
            raise ValueError(
                f"--recipes: bad count in {part!r} (expected NAME, NAME:ZOOS or NAME:ZOOS:SEEDS)"
            ) from None
        out.append((name.strip(), zoos, seeds))
    if not out:
        raise ValueError("--recipes: no recipe given")
    return tuple(out)


def _spread(values: Sequence[float]) -> dict[str, float]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"mean": math.nan, "min": math.nan, "max": math.nan, "sd": math.nan}
    return {
        "mean": statistics.fmean(vals),
        "min": min(vals),
        "max": max(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
    }


def _control(row: dict[str, Any], key: str) -> float:
    entry = row.get("confound", {}).get(key, {})
    return float(entry.get("accuracy", math.nan)) if entry.get("available", True) else math.nan


def _auroc(row: dict[str, Any]) -> float:
    entry = row.get("single_model", {})
    return float(entry.get("auroc", math.nan)) if entry.get("available") else math.nan


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``study.json`` from the runs' ``results.json`` (run name ``<recipe>-<i>`` -> results).

    Returns:
        ``{"recipes": {recipe: {"zoos": [run names], "confidence": {stat: spread and
        per-zoo}, "strategies": {name: {"accuracy": [per zoo], "mean", "min", "max", "sd",
        "matched", "adversarial", "residual", "auroc": [per zoo], "auroc_mean", "auroc_min",
        "auroc_max" ...}}}}}`` (``auroc``: single-model AUROC over models, NaN where the
        strategy has no statistic of one model).
    """
    recipes: dict[str, Any] = {}
    for name, res in runs.items():
        recipe = name.rsplit("-", 1)[0]
        entry = recipes.setdefault(recipe, {"zoos": [], "strategies": {}, "confidence": {}})
        entry["zoos"].append(name)
        for stat, row in res.get("confidence", {}).items():
            entry["confidence"].setdefault(stat, {"accuracy": []})["accuracy"].append(
                row["accuracy"]
            )
        for strat, row in res["strategies"].items():
            s = entry["strategies"].setdefault(
                strat,
                {
                    "accuracy": [],
                    "ci95": [],
                    "matched": [],
                    "adversarial": [],
                    "residual": [],
                    "auroc": [],
                },
            )
            s["accuracy"].append(row["accuracy"])
            s["ci95"].append(row["ci95"])
            s["matched"].append(_control(row, "matched"))
            s["adversarial"].append(_control(row, "adversarial"))
            s["residual"].append(_control(row, "residual"))
            s["auroc"].append(_auroc(row))
    for entry in recipes.values():
        for s in entry["strategies"].values():
            s.update(_spread(s["accuracy"]))
            for key in ("matched", "adversarial", "residual"):
                s[f"{key}_mean"] = _spread(s[key])["mean"]
            auroc = _spread(s["auroc"])
            s.update({f"auroc_{k}": auroc[k] for k in ("mean", "min", "max")})
        for c in entry["confidence"].values():
            c.update(_spread(c["accuracy"]))
    return {"recipes": recipes}


def _auroc_cell(s: dict[str, Any]) -> str:
    mean = s.get("auroc_mean", math.nan)
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f} [{s['auroc_min']:.2f}, {s['auroc_max']:.2f}]"


def render_study(study: dict[str, Any]) -> str:
    """``study.md``: per recipe, each strategy's mean accuracy over zoos and its spread."""
    lines = [
        "# poser_lens zoo-to-zoo study",
        "",
        "Accuracy of each strategy on independent zoos (scenario and base-model seeds differ); "
        "mean over zoos, with the range [min, max]. Controls are means over zoos. Chance is 50%. "
        "*AUROC over models* is single-model detection (each model scored alone; chance 0.50), "
        "mean over zoos [min, max].",
    ]
    pct = lambda x: "-" if x is None or math.isnan(x) else f"{100 * x:.0f}%"  # noqa: E731
    for recipe, entry in study["recipes"].items():
        lines += ["", f"## Recipe `{recipe}` ({len(entry['zoos'])} zoos)", ""]
        if entry["confidence"]:
            conf = ", ".join(
                f"{stat} {pct(c['mean'])} [{pct(c['min'])}, {pct(c['max'])}]"
                for stat, c in entry["confidence"].items()
            )
            lines += [f"Compare-confidence baseline: {conf}.", ""]
        lines += [
            "| strategy | per zoo | mean [min, max] | sd | matched | adversarial | "
            "conf. regressed out | AUROC over models |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for strat, s in entry["strategies"].items():
            lines.append(
                f"| `{strat}` | {' / '.join(pct(a) for a in s['accuracy'])} | "
                f"{pct(s['mean'])} [{pct(s['min'])}, {pct(s['max'])}] | "
                f"{100 * s['sd']:.0f} | {pct(s['matched_mean'])} | "
                f"{pct(s['adversarial_mean'])} | {pct(s['residual_mean'])} | "
                f"{_auroc_cell(s)} |"
            )
    return "\n".join(lines) + "\n"
