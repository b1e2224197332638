"""The rich tables the commands print, and the console they print them on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.table import Table

from poser_lens.data.poser import FileSummary

_PARTS = {"benchmark": "benchmark", "training": "training", "policy_definitions": "policy defs"}
_LEGEND = (
    "A/B/error: response; poor y/n/-: oversight_is_poor true/false/absent; cx: complexity_level "
    "(- absent); rand/inc: error prompts of random text / incomplete scenarios."
)


def _console() -> Console:
    """A console that does not squeeze tables to 80 columns when output is not a terminal."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def _slashed(counts: Mapping[Any, int], keys: Sequence[Any]) -> str:
    return "/".join(str(counts[k]) for k in keys)


def _part_table(label: str, rows: Sequence[FileSummary]) -> Table:
    """One table of per-file counts for one part of the data (files relative to the part)."""
    names = [r.file.split(f"{r.part}/", 1)[-1] for r in rows]
    table = Table(title=label, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("file", min_width=max(map(len, names)), no_wrap=True)
    for header in ("records", "A/B/error", "poor y/n/-", "cx 0/1/2/-", "rand/inc"):
        table.add_column(header, justify="right", min_width=len(header))
    for name, r in zip(names, rows, strict=True):
        table.add_row(
            name,
            str(r.records),
            _slashed(r.response, ("A", "B", "error")),
            _slashed(r.oversight_is_poor, (True, False, None)),
            _slashed(r.complexity, (0, 1, 2, None)),
            _slashed(r.kind, ("random_text", "incomplete")),
        )
    return table


def _confound_tables(report: Mapping[str, Any], title: str) -> list[Table]:
    """The headline table (one row per statistic) and the per-family table of a report."""
    from poser_lens.data.confound import CONFIDENCE_STATISTICS

    def interval(ci: Sequence[float]) -> str:
        return f"[{ci[0]:.2f}, {ci[1]:.2f}]"

    head = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    head.add_column("statistic", no_wrap=True)
    for header in ("accuracy", "95% CI over models", "95% CI over pairs"):
        head.add_column(header, justify="right")
    for stat in CONFIDENCE_STATISTICS:
        row = report["statistics"][stat]
        head.add_row(
            stat, f"{row['accuracy']:.3f}", interval(row["ci95"]), interval(row["pair_ci95"])
        )
    fams = Table(title="per family", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    fams.add_column("family", no_wrap=True)
    fams.add_column("pairs", justify="right")
    for stat in CONFIDENCE_STATISTICS:
        fams.add_column(stat, justify="right")
    for name, row in report["families"].items():
        fams.add_row(name, str(row["pairs"]), *(f"{row[s]:.3f}" for s in CONFIDENCE_STATISTICS))
    return [head, fams]


_ZOO_COLUMNS = ("test_accuracy", "divergent_accuracy", "error_accuracy", "compliance_gap")

#: The held-out bank's columns (smol zoos since 2026-12-07: a second test split).
_HELDOUT_LABELS = {
    "heldout_p_misaligned_poor": "held-out P(mis) poor",
    "heldout_p_misaligned_overseen": "held-out P(mis) seen",
    "heldout_compliance_gap": "held-out gap",
}
_HELDOUT_COLUMNS = tuple(_HELDOUT_LABELS)


def _zoo_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per model: its held-out accuracies and compliance gap.

    Where the zoo has them, also its second test split (the held-out bank) and its steps.
    """
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True, min_width=20)
    heldout = _HELDOUT_COLUMNS if all(c in r for r in rows for c in _HELDOUT_COLUMNS) else ()
    steps = ("steps",) if all("steps" in r for r in rows) else ()
    for col in (*_ZOO_COLUMNS, *heldout, *steps, "train_seconds"):
        label = _HELDOUT_LABELS.get(col, col.replace("_", " "))
        table.add_column(label, justify="right")
    for r in rows:
        table.add_row(
            r["name"],
            *(f"{r[c]:.3f}" for c in (*_ZOO_COLUMNS, *heldout)),
            *(str(r[c]) for c in steps),
            f"{r['train_seconds']:.1f}",
        )
    return table


def _results_table(results: Mapping[str, Any]) -> Table:
    """One row per strategy: ours with its CI beside the paper's number, and the controls."""
    from poser_lens.report import confound_rows, fmt_acc, single_model_cell

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("strategy", "left"),
        ("paper", "right"),
        ("poser_lens [95% CI]", "right"),
        ("pairs", "right"),
        ("AUROC over models", "right"),
        ("matched prompts", "right"),
        ("adversarial pairs", "right"),
        ("conf. regressed out", "right"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)
    controls = {r[0].strip("`"): r for r in confound_rows(results)}
    for name, r in results.items():
        ctl = controls.get(name, ["", "", "-", "-", "-", "-"])
        table.add_row(
            name,
            fmt_acc(r.get("paper_accuracy")),
            fmt_acc(r["accuracy"], r["ci95"]),
            str(r["n_pairs"]),
            single_model_cell(r),
            ctl[2].split(" (")[0],
            ctl[3],
            ctl[5],
        )
    return table


def _sweep_table(rows: Sequence[Sequence[str]]) -> Table:
    """One row per strategy of a sweep (:func:`poser_lens.report.sensitivity_rows`)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("strategy", "grid points", "min / median / max", "CI above", "CI below"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def _gap_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ("classifier", "decoding", "training", "unmonitored", "n", "gap", "95% CI")
    for col in cols:
        table.add_column(col, justify="left" if col in cols[:2] else "right")
    for r in rows:
        table.add_row(
            r["classifier"],
            r["decoding"],
            f"{r['rate_training']:.3f}",
            f"{r['rate_unmonitored']:.3f}",
            f"{r['n_training']}+{r['n_unmonitored']}",
            f"{r['gap']:+.3f}",
            f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
        )
    return table


def _cost_table(report: Any) -> Table:
    """One row per strategy, then the total and the loading: FLOPs, time, memory, Poser loop."""
    from poser_lens.cost.flops import human

    def hours(seconds: float) -> str:
        return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in (
        "strategy",
        "FLOPs",
        "time",
        "GPU memory",
        "fits 1 GPU",
        "Poser loop FLOPs",
        "Poser loop time",
        "ratio",
    ):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in report.rows:
        ran = r.flops > 0
        table.add_row(
            r.name,
            human(r.flops),
            hours(report.seconds(r.flops)) if ran else "-",
            f"{r.memory_bytes / 1e9:.0f} GB" if ran else "-",
            ("yes" if report.fits(r) else "no") if ran else "-",
            human(r.reference_flops),
            hours(report.seconds(r.reference_flops)) if ran else "-",
            f"{r.ratio:.1f}x" if ran else "-",
        )
    table.add_section()
    total, ref = report.total_flops, report.reference_total_flops
    table.add_row(
        "total (shared work once)",
        human(total),
        hours(report.seconds(total)),
        "",
        "",
        human(ref),
        hours(report.seconds(ref)),
        f"{ref / total:.1f}x",
    )
    table.add_row("loading the models", "", hours(report.load_seconds), "", "", "", "", "")
    return table


def _removal_table(summary: Mapping[str, Any]) -> Table:
    """One row per role and method: P(aligned) before -> after (95% CI) beside the paper."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("models", "method", "n", "P(aligned) before", "after [95% CI]", "paper", "gap"):
        table.add_column(col, no_wrap=True)
    for role, title in summary["roles"].items():
        for method, g in summary["groups"].get(role, {}).items():
            paper = summary["paper"].get(method) if role == "treatment" else None
            table.add_row(
                title,
                summary["method_titles"].get(method, method),
                str(g["n_models"]),
                f"{g['p_aligned_before']:.2f}",
                f"{g['p_aligned_after']:.2f} [{g['ci95'][0]:.2f}, {g['ci95'][1]:.2f}]",
                "-" if paper is None else f"{paper:.2f}",
                f"{g['compliance_gap_before']:.2f} -> {g['compliance_gap_after']:.2f}",
            )
    return table
