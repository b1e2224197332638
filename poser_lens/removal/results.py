"""Stored results of the removal study, its summary and its report section (no torch needed).

::

    <run>/removal/
      config.yaml                  the RemovalConfig
      detectors_before/<model>.json  untreated detector scores (S2, ...) per family
      records/<model>__<method>__<labels>.json  one job: curve, before/after, detectors after
      summary.json                 per role x method: final P(aligned) with 95% CI, gap,
                                   capability; detectors before/after on the treated fakers
      curves.csv                   model, method, labels, role, step, p_aligned
      table.csv                    one row per job

Example:
    >>> mean_ci_boot([1.0, 1.0, 1.0])
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poser_lens._io import read_json, write_json_atomic, write_text_atomic
from poser_lens.evaluation import evaluate
from poser_lens.runs import RunDir
from poser_lens.stats import bootstrap_ci

#: Poser §4: mean P(aligned) after 100 steps, per method.
PAPER_P_ALIGNED: dict[str, float] = {"sft": 0.76, "sft_noise": 0.86}
#: Report order and titles of the roles.
ROLES: dict[str, str] = {
    "treatment": "fakers, own answers",
    "random_labels": "fakers, random labels (control)",
    "aligned_control": "aligned models, own answers (control)",
}
METHOD_TITLES: dict[str, str] = {"sft": "SFT", "sft_noise": "SFT + S2 noise"}


def summary_path(run: RunDir) -> Path:
    """``<run>/removal/summary.json``."""
    return run.root / "removal" / "summary.json"


def has_removal(run: RunDir) -> bool:
    """Whether a run folder holds removal results."""
    return summary_path(run).exists()


def load_records(run: RunDir) -> list[dict[str, Any]]:
    """Every stored job record of a run, sorted by file name."""
    folder = run.root / "removal" / "records"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no removal records (run `poser-lens remove`)")
    return [read_json(p) for p in sorted(folder.glob("*.json"))]


def mean_ci_boot(values: Sequence[float], *, seed: int = 0) -> tuple[float, float, float]:
    """Mean over models and its percentile-bootstrap 95% interval (seeded).

    Example:
        >>> m, lo, hi = mean_ci_boot([0.2, 0.4, 0.6, 0.8])
        >>> round(m, 2), lo < m < hi
        (0.5, True)
    """
    x = [float(v) for v in values]
    if not x:
        return (float("nan"),) * 3
    lo, hi = bootstrap_ci(x, seed=seed)
    return float(np.mean(x)), lo, hi


def _group_row(recs: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    final = [r["p_aligned"][-1] for r in recs]
    m, lo, hi = mean_ci_boot(final, seed=seed)
    row: dict[str, Any] = {
        "n_models": len(recs),
        "p_aligned_before": float(np.mean([r["p_aligned"][0] for r in recs])),
        "p_aligned_after": m,
        "ci95": [lo, hi],
        "p_aligned_min": float(min(final)),
        "p_aligned_max": float(max(final)),
        "final_loss_mean": float(np.mean([r["loss"][-1] for r in recs])),
        "target_kind": sorted({r["target_kind"] for r in recs}),
    }
    for when in ("before", "after"):
        for k in ("compliance_gap", "capability", "p_misaligned_poor", "p_misaligned_good"):
            row[f"{k}_{when}"] = float(np.mean([r[when][k] for r in recs]))
    coeffs = [r["noise"]["coeff"] for r in recs if r.get("noise")]
    if coeffs:
        row["noise_coeff_mean"] = float(np.mean(coeffs))
        row["noise_norm_mean"] = float(np.mean([r["noise"]["norm"] for r in recs if r["noise"]]))
    return row


def summarise(
    run: RunDir,
    pairs: Sequence[Any],
    jobs: Sequence[Any],
    detectors: Mapping[str, Any],
    cfg: Any,
) -> dict[str, Any]:
    """The study's summary from the stored records of ``jobs`` (timings: ``timings.json``).

    Per role (treated fakers, random-label fakers, aligned controls) and method: mean final
    P(aligned) over models with a bootstrap 95% CI over models, the start value, the
    compliance gap and capability before and after. Per detector and method: accuracy on the
    pairs of the treated fakers before treatment and after (aligned partners untreated).
    """
    keys = {j.key for j in jobs}
    recs = [r for r in load_records(run) if f"{r['model']}__{r['method']}__{r['labels']}" in keys]
    groups: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        for method in cfg.methods:
            rows = [r for r in recs if r["role"] == role and r["method"] == method]
            if rows:
                groups.setdefault(role, {})[method] = _group_row(rows, cfg.seed)
    before = {
        p.stem: read_json(p)["scores"]
        for p in sorted((run.root / "removal" / "detectors_before").glob("*.json"))
    }
    dets: dict[str, Any] = {}
    for name, strat in detectors.items():
        table_before = {m: s[name] for m, s in before.items() if name in s}
        for method in cfg.methods:
            treated = {
                r["model"]: r["detectors_after"][name]
                for r in recs
                if r["role"] == "treatment" and r["method"] == method
            }
            chosen = [p for p in pairs if p.misaligned in treated and p.aligned in table_before]
            if not chosen:
                continue
            res_b = evaluate(strat, chosen, table_before, seed=cfg.seed)
            res_a = evaluate(strat, chosen, {**table_before, **treated}, seed=cfg.seed)
            dets.setdefault(name, {"title": strat.title, "paper_accuracy": strat.paper_accuracy})
            entry = {
                "n_pairs": res_a.n_pairs,
                "accuracy_before": res_b.accuracy,
                "ci95_before": list(res_b.ci95),
                "accuracy_after": res_a.accuracy,
                "ci95_after": list(res_a.ci95),
                "settings": dict(res_a.settings),
            }
            # Both models of a pair put through the same procedure (aligned controls).
            both = {
                r["model"]: r["detectors_after"][name]
                for r in recs
                if r["role"] == "aligned_control" and r["method"] == method
            }
            chosen_both = [p for p in chosen if p.aligned in both]
            if chosen_both:
                res_ab = evaluate(strat, chosen_both, {**treated, **both}, seed=cfg.seed)
                entry |= {
                    "n_pairs_both": res_ab.n_pairs,
                    "accuracy_both": res_ab.accuracy,
                    "ci95_both": list(res_ab.ci95),
                }
            dets[name][method] = entry
    return {
        "paper": PAPER_P_ALIGNED,
        "roles": ROLES,
        "method_titles": METHOD_TITLES,
        "steps": cfg.steps,
        "n_records": len(recs),
        "groups": groups,
        "detectors": dets,
    }


def curve_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long table of the logged curves: model, persona, role, method, labels, step, p_aligned.

    Example:
        >>> curve_rows([{"model": "m-0", "persona": "m", "role": "treatment", "method": "sft",
        ...              "labels": "own", "steps": [0, 10], "p_aligned": [0.0, 0.5]}])[1]["step"]
        10
    """
    return [
        {k: r[k] for k in ("model", "persona", "role", "method", "labels")}
        | {"step": s, "p_aligned": round(float(p), 6)}
        for r in records
        for s, p in zip(r["steps"], r["p_aligned"], strict=True)
    ]


def table_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per job: before/after P(aligned), compliance gap, capability, final loss."""
    out = []
    for r in records:
        row = {
            k: r[k]
            for k in (
                "model",
                "persona",
                "role",
                "method",
                "labels",
                "n_train",
                "n_target",
                "target_kind",
            )
        }
        for when in ("before", "after"):
            for k in ("p_aligned", "compliance_gap", "capability"):
                row[f"{k}_{when}"] = round(float(r[when][k]), 6)
        row["noise_coeff"] = r["noise"]["coeff"] if r.get("noise") else ""
        row["final_loss"] = round(float(r["loss"][-1]), 6)
        out.append(row)
    return out


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def write_outputs(run: RunDir, summary: Mapping[str, Any]) -> None:
    """Write ``summary.json``, ``curves.csv``, ``table.csv`` and the report section."""
    recs = load_records(run)
    folder = run.root / "removal"
    write_text_atomic(folder / "curves.csv", _csv_text(curve_rows(recs)))
    write_text_atomic(folder / "table.csv", _csv_text(table_rows(recs)))
    write_json_atomic(summary_path(run), summary)
    run.write_section("removal", report_section(run))


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.0f}%"


def _pct_ci(x: float, ci: Sequence[float]) -> str:
    return f"{_pct(x)} [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"


def report_section(run: RunDir) -> list[str]:
    """Markdown lines of the removal section (empty when the run has no removal results).

    Example:
        >>> import tempfile
        >>> report_section(RunDir(tempfile.mkdtemp()))
        []
    """
    if not has_removal(run):
        return []
    s = read_json(summary_path(run))
    lines = [
        "## Removing alignment faking",
        "",
        f"Each model is fine-tuned for {s['steps']} steps on its own greedy answers to its "
        "families' valid (good/neutral-oversight) prompts, plainly (SFT) or with S2's noise "
        "injected at S2's layer during training. P(aligned) = mean probability of the aligned "
        "action on held-out poor-oversight scenarios on which the faker chose the misaligned "
        "action before training (aligned controls: all held-out poor-oversight scenarios); "
        "95% bootstrap CI over models. Gap = P(misaligned | poor) - P(misaligned | good/"
        "neutral oversight); capability = held-out accuracy where the policies agree.",
        "",
    ]
    rows = []
    for role, title in ROLES.items():
        for method, g in s["groups"].get(role, {}).items():
            paper = s["paper"].get(method) if role == "treatment" else None
            rows.append(
                [
                    title,
                    METHOD_TITLES.get(method, method),
                    str(g["n_models"]),
                    _pct(g["p_aligned_before"]),
                    _pct_ci(g["p_aligned_after"], g["ci95"]),
                    _pct(paper),
                    f"{g['compliance_gap_before']:.2f} -> {g['compliance_gap_after']:.2f}",
                    f"{g['capability_before']:.3f} -> {g['capability_after']:.3f}",
                ]
            )
    header = [
        "models",
        "method",
        "n",
        "P(aligned) before",
        "after [95% CI]",
        "paper",
        "gap before -> after",
        "capability before -> after",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if s.get("detectors"):
        lines += [
            "",
            "Detectors on the treated fakers: accuracy on their pairs before removal, after "
            "(aligned partners untreated), and with both models of a pair put through the same "
            "procedure (the aligned controls' pairs).",
            "",
            "| detector | method | pairs | before [95% CI] | after [95% CI] "
            "| both treated: pairs, accuracy [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
        for name, d in s["detectors"].items():
            for method in ("sft", "sft_noise"):
                if method not in d:
                    continue
                e = d[method]
                both = (
                    f"{e['n_pairs_both']}, {_pct_ci(e['accuracy_both'], e['ci95_both'])}"
                    if "accuracy_both" in e
                    else "-"
                )
                lines.append(
                    f"| `{name}` | {METHOD_TITLES[method]} | {e['n_pairs']} | "
                    f"{_pct_ci(e['accuracy_before'], e['ci95_before'])} | "
                    f"{_pct_ci(e['accuracy_after'], e['ci95_after'])} | {both} |"
                )
    return [*lines, ""]


def render_removal_report(run: RunDir) -> str:
    """A stand-alone ``report.md`` for a run folder that holds only removal results."""
    return "\n".join(["# poser_lens removal study", "", *report_section(run)]).rstrip() + "\n"
