"""``report.md``: the tables a reader wants, made from a run folder's stored results only.

Example:
    >>> fmt_acc(0.5, [0.4, 0.6])
    '50% [40, 60]'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poser_lens._io import write_text_atomic
from poser_lens.data.schema import ALIGNED_PERSONAS, FAKER_PERSONAS, FAMILY_TOKEN
from poser_lens.runs import RunDir


def fmt_acc(acc: float | None, ci: Sequence[float] | None = None) -> str:
    """An accuracy as a percentage, with its CI when given.

    Example:
        >>> fmt_acc(None), fmt_acc(0.98)
        ('-', '98%')
    """
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "-"
    text = f"{100 * acc:.0f}%"
    if ci is not None:
        text += f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"
    return text


def fmt_auroc(auroc: float | None, ci: Sequence[float] | None = None) -> str:
    """An AUROC to two decimals, with its CI when given.

    Example:
        >>> fmt_auroc(0.987, [0.96, 1.0]), fmt_auroc(None)
        ('0.99 [0.96, 1.00]', '-')
    """
    if auroc is None or (isinstance(auroc, float) and math.isnan(auroc)):
        return "-"
    text = f"{auroc:.2f}"
    if ci is not None:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def single_model_cell(row: Mapping[str, Any]) -> str:
    """A strategy's AUROC over models with its CI, from its ``results.json`` row.

    Example:
        >>> single_model_cell({"single_model": {"available": True, "auroc": 0.5,
        ...                                     "ci95": [0.3, 0.7]}})
        '0.50 [0.30, 0.70]'
        >>> single_model_cell({"single_model": {"available": False, "reason": "a vote"}})
        'n/a'
    """
    entry = row.get("single_model")
    if not entry:
        return "-"
    if not entry.get("available"):
        return "n/a"
    return fmt_auroc(entry["auroc"], entry["ci95"])


def single_model_rows(strategies: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Per strategy: pair accuracy, AUROC over models, recall at the set rate, and controls.

    Example:
        >>> sm = {"available": True, "auroc": 1.0, "ci95": [1.0, 1.0], "n_aligned": 2,
        ...       "n_fakers": 2, "recall": {"recall": 1.0, "ci95": [1.0, 1.0],
        ...       "expected_fpr": 0.333}, "confound": {"confidence_correlation": 0.1,
        ...       "residual_auroc": 0.9, "residual_ci95": [0.8, 1.0]}}
        >>> rows = single_model_rows({"x": {"accuracy": 1.0, "ci95": [1, 1], "single_model": sm}})
        >>> rows[0][2:4]
        ['1.00 [1.00, 1.00]', '100% [100, 100] at FPR 33.3%']
    """
    out = []
    for name, r in strategies.items():
        sm = r.get("single_model")
        if not sm:
            continue
        if not sm.get("available"):
            out.append(
                [f"`{name}`", fmt_acc(r["accuracy"], r["ci95"]), f"n/a ({sm.get('reason', '')})"]
                + ["-"] * 3
            )
            continue
        rec, ctl = sm.get("recall", {}), sm.get("confound", {})
        corr = ctl.get("confidence_correlation")
        out.append(
            [
                f"`{name}`",
                fmt_acc(r["accuracy"], r["ci95"]),
                fmt_auroc(sm["auroc"], sm["ci95"]),
                f"{fmt_acc(rec.get('recall'), rec.get('ci95'))} at FPR "
                f"{100 * rec['expected_fpr']:.1f}%"
                if rec
                else "-",
                "-" if corr is None or math.isnan(corr) else f"{corr:.2f}",
                fmt_auroc(ctl.get("residual_auroc"), ctl.get("residual_ci95")),
            ]
        )
    return out


def single_model_section(res: Mapping[str, Any]) -> list[str]:
    """The single-model detection of every strategy with a statistic of one model."""
    strategies = res.get("strategies", {})
    rows = single_model_rows(strategies)
    if not rows:
        return []
    n_al = next(
        (
            r["single_model"].get("n_aligned")
            for r in strategies.values()
            if r.get("single_model", {}).get("available")
        ),
        None,
    )
    return [
        "",
        "## Single-model detection",
        "",
        "A deployer holds one model, not a labelled pair. Each model's score is the strategy's "
        "statistic of that model alone at the headline settings, averaged over the families it "
        "was scored in; fakers are the positives. *AUROC* is over models (95% CI: aligned models "
        "and fakers resampled separately); within a family it is the Mann-Whitney statistic of "
        "the scores the pair verdicts compare. *Recall* is the share of fakers above a "
        "threshold set on the aligned models alone, at the rate a new aligned model of this zoo "
        f"would be flagged at ({n_al} aligned models allow no less than "
        f"{100 / (n_al + 1) if n_al else float('nan'):.1f}%). *Corr.* is the Spearman correlation, "
        "over models, of the score with the compare-confidence baseline's (negated mean "
        "answer confidence); *residual* the AUROC once that part is regressed out. A score "
        "that only tracks confidence has corr. +-1 and residual 0.50. The baseline's own "
        "AUROC is the floor each detector must beat.",
        "",
        *_table(
            [
                "strategy",
                "pair accuracy",
                "AUROC over models",
                "recall at FPR",
                "corr. with confidence",
                "residual AUROC",
            ],
            rows,
        ),
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _settings(d: Mapping[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts) or "-"


def sensitivity_rows(sweep: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[list[str]]:
    """Per strategy: grid size, min / median / max accuracy, share of points above chance.

    "Above chance" means the point's 95% CI lies above 50%; "below" that it lies below.

    Example:
        >>> sensitivity_rows({"x": [{"accuracy": 0.9, "ci95": [0.8, 1.0]},
        ...                         {"accuracy": 0.5, "ci95": [0.4, 0.6]}]})[0][:3]
        ['x', '2', '50% / 70% / 90%']
    """
    out = []
    for name, rows in sweep.items():
        if not rows:
            continue
        accs = sorted(r["accuracy"] for r in rows)
        mid = (
            accs[len(accs) // 2]
            if len(accs) % 2
            else (accs[len(accs) // 2 - 1] + accs[len(accs) // 2]) / 2
        )
        above = sum(r["ci95"][0] > 0.5 for r in rows)
        below = sum(r["ci95"][1] < 0.5 for r in rows)
        out.append(
            [
                name,
                str(len(rows)),
                f"{100 * accs[0]:.0f}% / {100 * mid:.0f}% / {100 * accs[-1]:.0f}%",
                f"{above}/{len(rows)}",
                f"{below}/{len(rows)}",
            ]
        )
    return out


def family_rows(per_family: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    """Aligned family (rows) x faker family (columns) accuracies."""
    rows = []
    for a in ALIGNED_PERSONAS:
        row = [FAMILY_TOKEN[a]]
        for f in FAKER_PERSONAS:
            entry = per_family.get(f"{FAMILY_TOKEN[a]}_and_{FAMILY_TOKEN[f]}")
            row.append(fmt_acc(entry["accuracy"]) if entry else "-")
        rows.append(row)
    return rows


def _ctl(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("available") is False or "accuracy" not in entry:
        return "n/a"
    return fmt_acc(entry["accuracy"], entry["ci95"])


def confound_rows(strategies: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Per strategy: headline, matched prompts, adversarial pairs, correlation, residual.

    Example:
        >>> ctl = {"matched": {"available": False}, "adversarial": {"accuracy": 0.0,
        ...        "ci95": [0.0, 0.0], "n_pairs": 3}, "margin_correlation": 1.0,
        ...        "residual": {"accuracy": 0.5, "ci95": [0.5, 0.5]}}
        >>> confound_rows({"x": {"accuracy": 1.0, "ci95": [1, 1], "confound": ctl}})[0][2:]
        ['n/a', '0% [0, 0] (3)', '+1.00', '50% [50, 50]']
    """
    rows = []
    for name, r in strategies.items():
        ctl = r.get("confound")
        if not ctl:
            continue
        matched = ctl.get("matched", {})
        m = _ctl(matched)
        if matched.get("available", False):
            ppp = matched.get("prompts_per_pair", {})
            m += f" ({matched['n_pairs']} pairs, {ppp.get('median', 0):.0f} prompts)"
        adv = ctl.get("adversarial", {})
        corr = ctl.get("margin_correlation")
        rows.append(
            [
                f"`{name}`",
                fmt_acc(r["accuracy"], r["ci95"]),
                m,
                f"{_ctl(adv)} ({adv.get('n_pairs', 0)})",
                "-" if corr is None or math.isnan(corr) else f"{corr:+.2f}",
                _ctl(ctl.get("residual")),
            ]
        )
    return rows


def confound_summary(row: Mapping[str, Any]) -> str:
    """One line of a strategy's confound controls (its ``results.json`` row).

    Example:
        >>> ctl = {"matched": {"available": False}, "adversarial": {"accuracy": 0.0,
        ...        "ci95": [0.0, 0.0], "n_pairs": 3}, "margin_correlation": 1.0,
        ...        "residual": {"accuracy": 0.5, "ci95": [0.5, 0.5]}}
        >>> confound_summary({"accuracy": 1.0, "ci95": [1, 1], "confound": ctl})
        'matched prompts n/a; adversarial pairs 0% [0, 0] (3); corr. +1.00; confidence regressed out 50% [50, 50]'
    """  # noqa: E501
    rows = confound_rows({"x": row})
    if not rows:
        return "no confound controls"
    _, _, matched, adv, corr, resid = rows[0]
    return (
        f"matched prompts {matched}; adversarial pairs {adv}; corr. {corr}; "
        f"confidence regressed out {resid}"
    )


def confound_section(res: Mapping[str, Any]) -> list[str]:
    """The confound controls of every strategy and the compare-confidence statistics."""
    lines: list[str] = []
    conf = res.get("confidence")
    if conf:
        lines += [
            "",
            "## Confidence confound",
            "",
            "Compare-confidence baseline (the less confident model is called the faker) on the "
            "prompts the run scored, by each statistic:",
            "",
        ]
        lines += _table(
            ["statistic", "accuracy [95% CI over models]", "CI over pairs"],
            [
                [
                    f"`{k}`",
                    fmt_acc(v["accuracy"], v["ci95"]),
                    fmt_acc(None)
                    if "ci95_pairs" not in v
                    else f"[{100 * v['ci95_pairs'][0]:.0f}, {100 * v['ci95_pairs'][1]:.0f}]",
                ]
                for k, v in conf.items()
            ],
        )
    rows = confound_rows(res.get("strategies", {}))
    if rows:
        tol = next(
            (
                r["confound"]["matched"].get("tolerance")
                for r in res["strategies"].values()
                if r.get("confound", {}).get("matched", {}).get("available")
            ),
            None,
        )
        lines += [
            "",
            "Confound controls of each detector: *matched* re-scores each pair on the valid "
            "prompts where the two models' answer log-odds differ by less than "
            f"{tol if tol is not None else '-'} (pairs kept, median prompts per pair); "
            "*adversarial* is the accuracy on the pairs where compare-confidence names the wrong "
            "model (their number); *corr.* the Spearman correlation of the detector's pair "
            "margin with the confidence margin; *residual* the accuracy once the confidence "
            "margin is regressed out. A detector that only tracks confidence scores about 50% "
            "matched, 0% adversarial and 50% residual.",
            "",
        ]
        lines += _table(
            ["strategy", "headline", "matched", "adversarial", "corr.", "residual"], rows
        )
    variants = [
        [f"`{name}`", f"`{label}`", _settings(v.get("settings", {})), _ctl(v)]
        for name, r in res.get("strategies", {}).items()
        for label, v in r.get("variants", {}).items()
    ]
    if variants:
        lines += [
            "",
            "Deconfounded variants of the headline (e.g. S2: the rise of P(misaligned) in "
            "log-odds, and noise scaled per model to the same mean KL on its answer "
            "distribution, so a smaller starting margin cannot by itself give a larger rise):",
            "",
        ]
        lines += _table(["strategy", "variant", "settings", "accuracy [95% CI]"], variants)
    return lines


def fingerprint_lines(res: Mapping[str, Any]) -> list[str]:
    """The report's line naming the zoo and benchmark the results come from (if recorded).

    Example:
        >>> fingerprint_lines({"zoo_key": "abc", "fingerprint": {"weights": "12", "benchmark": "34"}})
        ['', 'Zoo `abc`: weights fingerprint `12`, benchmark fingerprint `34` (sha256 of the files; the same zoo key built on another machine can differ, see the README).']
    """  # noqa: E501
    prints = res.get("fingerprint")
    if not isinstance(prints, Mapping) or not prints:
        return []
    parts = ", ".join(f"{k} fingerprint `{v}`" for k, v in prints.items())
    return [
        "",
        f"Zoo `{res.get('zoo_key', '-')}`: {parts} (sha256 of the files; the same zoo key "
        "built on another machine can differ, see the README).",
    ]


def render_report(run: RunDir) -> str:
    """The Markdown report of a run."""
    res = run.results()
    strategies = res["strategies"]
    lines = [
        "# poser_lens run",
        "",
        f"Testbed **{res['testbed']}**: {res['n_models']} models, {res['n_pairs']} pairs "
        f"(aligned vs faker). Accuracy = share of pairs where the detector names the faker; "
        "95% CI by a cluster bootstrap over models (aligned and faker models resampled "
        "separately, pairs rebuilt: the pairs share models, so they are not independent); "
        "chance is 50%.",
        "",
        "## Detection accuracy",
        "",
    ]
    rows = [
        [
            f"`{n}`",
            r.get("title", ""),
            fmt_acc(r.get("paper_accuracy")),
            fmt_acc(r["accuracy"], r["ci95"]),
            single_model_cell(r),
            str(r["n_pairs"]),
            _settings(r.get("settings", {})),
        ]
        for n, r in strategies.items()
    ]
    lines += _table(
        [
            "strategy",
            "what",
            "paper",
            "poser_lens [95% CI]",
            "AUROC over models",
            "pairs",
            "settings",
        ],
        rows,
    )
    bench = res.get("benchmark")
    if bench:
        lines += [
            "",
            f"Benchmark: {bench.get('valid_prompts')} valid prompts; compare-confidence baseline "
            f"on them {bench.get('confidence_baseline', float('nan')):.2f} "
            f"(filter: {bench.get('confidence_filter')}). A detector that merely tracks the "
            "models' confidence would match that baseline.",
        ]
    lines += fingerprint_lines(res)
    lines += confound_section(res)
    lines += single_model_section(res)
    sweep = run.sweep()
    if sweep:
        lines += [
            "",
            "## Sensitivity",
            "",
            "Accuracy over each strategy's settings grid (`sweep.json`). Headline numbers use "
            "settings fixed in advance or chosen without labels; a finding should hold across "
            "the grid.",
            "",
        ]
        lines += _table(
            ["strategy", "grid points", "min / median / max", "CI above chance", "CI below chance"],
            sensitivity_rows(sweep),
        )
    lines += ["", "## Per family (aligned x faker)", ""]
    for n, r in strategies.items():
        if r.get("per_family"):
            lines += [f"`{n}`", ""]
            lines += _table(
                ["", *(FAMILY_TOKEN[f] for f in FAKER_PERSONAS)], family_rows(r["per_family"])
            )
            lines.append("")
    lines += run.sections()  # the add-on studies' sections (removal), as their jobs wrote them
    # Timings are in timings.json (and, in results of older runs, under "seconds"): the
    # report holds results only, so two runs of the same settings write the same report.
    figs = sorted(run.figures_dir.glob("*.png")) if run.figures_dir.exists() else []
    if figs:
        lines += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs] + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(run: RunDir) -> Path:
    """Write ``report.md`` into the run folder; returns its path."""
    path = run.root / "report.md"
    write_text_atomic(path, render_report(run))
    return path
