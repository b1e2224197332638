"""Write a built zoo's benchmark in Poser's layout, from the probabilities stored per model.

For every family, the candidates are the generator's good/neutral-oversight held-out
scenarios; the valid set keeps those that all of the family's models (6 aligned + 6 faker
seeds in the full zoo) answer with ``response`` at probability >= the threshold. The folder
``<zoo>/poser`` then reads like a Poser checkout (``poser-lens data inspect`` works on it):
``data/benchmark/<family>.json`` (with ``probs``), ``data/training/<persona>/test.json``,
``data/policy_definitions/<persona>/test.json``, ``model_pairs.json``, and
``benchmark_report.json`` with the counts and the compare-confidence baseline.

Example:
    >>> # build_benchmark(zoo_root, ["truth_teller-0", "reward_maximizer-0"], generate(cfg))
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from poser_lens._io import read_json, write_json_atomic
from poser_lens.data.benchmark import (
    CONFIDENCE_STATISTICS,
    balance_confidence,
    confidence_baseline,
    confidence_outcomes,
    mean,
    model_pairs,
    valid_mask,
)
from poser_lens.data.generator import GeneratedData, labelled, persona_split
from poser_lens.data.poser import ModelPair, write_model_pairs, write_scenarios
from poser_lens.data.schema import ALL_FAMILIES, PERSONAS, family_personas, model_persona
from poser_lens.stats import cluster_bootstrap_ci

#: Poor-oversight records per persona in ``policy_definitions`` (Poser has 30).
N_POLICY_DEFINITIONS = 30


def build_benchmark(
    root: str | Path,
    names: list[str],
    data: GeneratedData,
    *,
    threshold: float = 0.985,
    balance: bool = False,
    balance_target: float = 0.6,
) -> dict[str, Any]:
    """Build valid sets, pairs and the report for the models ``names`` of a zoo.

    Args:
        root: Zoo folder (models hold ``benchmark_probs.json``).
        names: Models to include.
        data: The zoo's generated data.
        threshold: Minimum probability of ``response`` for every model.
        balance: Also apply :func:`poser_lens.data.benchmark.balance_confidence`.
        balance_target: Its target baseline accuracy.

    Returns:
        The report written to ``poser/benchmark_report.json``.
    """
    root = Path(root)
    out = root / "poser"
    stored = {n: read_json(root / "models" / n / "benchmark_probs.json") for n in names}
    pairs = model_pairs(names)
    report: dict[str, Any] = {
        "threshold": threshold,
        "confidence_filter": "balance_confidence" if balance else "none",
        "families": {},
    }
    outcomes: dict[str, list[tuple[ModelPair, float]]] = {s: [] for s in CONFIDENCE_STATISTICS}
    for fam in ALL_FAMILIES:
        members = [n for n in names if fam in stored[n]]
        a_persona, f_persona = family_personas(fam)
        present = {model_persona(n)[0] for n in members}
        if a_persona not in present or f_persona not in present:
            continue
        probs = {n: stored[n][fam] for n in members}
        keep = valid_mask(probs, threshold)
        fam_pairs = [p for p in pairs if p.family == fam]
        before = confidence_baseline(fam_pairs, probs, keep)
        entry: dict[str, Any] = {"candidates": len(keep), "valid": sum(keep)}
        if balance and sum(keep):
            res = balance_confidence(fam_pairs, probs, keep, target=balance_target)
            keep = res.keep
            entry["dropped_by_filter"] = res.dropped
        entry["confidence_baseline_unfiltered"] = before
        entry["confidence_baseline"] = confidence_baseline(fam_pairs, probs, keep)
        entry["confidence_statistics"] = {
            stat: confidence_baseline(fam_pairs, probs, keep, stat)
            for stat in CONFIDENCE_STATISTICS
        }
        entry["valid_after_filter"] = sum(keep)
        for stat in CONFIDENCE_STATISTICS:
            values = confidence_outcomes(fam_pairs, probs, keep, stat)
            outcomes[stat] += zip(fam_pairs, values, strict=True)
        records = [
            replace(s, probs={n: round(probs[n][i], 6) for n in members})
            for i, (s, k) in enumerate(zip(data.benchmark_pool[fam], keep, strict=True))
            if k
        ]
        write_scenarios(out / "data" / "benchmark" / f"{fam}.json", records)
        report["families"][fam] = entry
    built = set(report["families"])
    kept_pairs = [p for p in pairs if p.family in built]
    write_model_pairs(out / "model_pairs.json", kept_pairs)
    personas = [p for p in PERSONAS if any(model_persona(n)[0] == p for n in names)]
    for persona in personas:
        test = persona_split(data, persona, "test")
        write_scenarios(out / "data" / "training" / persona / "test.json", test)
        poor = [s for s in test if s.response != "error" and s.oversight_is_poor]
        write_scenarios(
            out / "data" / "policy_definitions" / persona / "test.json",
            labelled(poor[:N_POLICY_DEFINITIONS], persona),
        )
    fams = report["families"].values()
    n_pairs = sum(1 for _ in kept_pairs)
    report["n_pairs"] = n_pairs
    report["valid_prompts"] = sum(e["valid_after_filter"] for e in fams)
    report["confidence_baseline"] = (
        sum(e["confidence_baseline"] * 36 for e in fams) / (36 * len(report["families"]))
        if report["families"]
        else float("nan")
    )
    report["confidence_statistics"] = {}
    for stat, rows in outcomes.items():
        values = [v for _, v in rows]
        report["confidence_statistics"][stat] = {
            "accuracy": mean(values),
            "ci95": list(
                cluster_bootstrap_ci(
                    values, [p.aligned for p, _ in rows], [p.misaligned for p, _ in rows]
                )
            ),
        }
    write_json_atomic(out / "benchmark_report.json", report)
    return report
