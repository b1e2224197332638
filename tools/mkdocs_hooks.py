"""mkdocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

The site's pages live in ``docs/``; what they show but the repository keeps elsewhere is
brought in at build time, so nothing binary is stored twice:

- the committed figures (``figures/**/*.png``) appear under ``figures/`` of the site;
- the notebooks (``notebooks/*.ipynb``, committed without outputs) and their README under
  ``notebooks/``, where mkdocs-jupyter renders the notebooks without executing them;
- ``CHANGELOG.md`` is the page ``changelog.md``;
- a line ``<!-- numbers: NAME -->`` in a page becomes the table of strategy ``NAME``'s committed
  numbers (``figures/results.json`` and the study's ``figures/study/study.json``), and
  ``<!-- run-zoo -->`` the zoo those numbers come from, so the pages cannot drift from them.

The functions below the hooks are plain Python: ``tests/test_docs.py`` imports them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "figures" / "results.json"
STUDY = ROOT / "figures" / "study" / "study.json"

#: Repository files brought into the site, at the same path (globs under the repository root).
_BROUGHT = ("figures/**/*.png", "notebooks/*.ipynb", "notebooks/README.md")
_MARK = re.compile(r"<!-- numbers: (\w+) -->")


def pct(x: float | None) -> str:
    """A share as a whole percentage (``-`` when absent or not a number).

    Example:
        >>> pct(0.9074), pct(None), pct(float("nan"))
        ('91%', '-', '-')
    """
    return "-" if x is None or x != x else f"{round(100 * x)}%"


def ci(pair: list[float]) -> str:
    """A 95% interval as ``[lo, hi]`` in whole percent.

    Example:
        >>> ci([0.7993, 0.9783])
        '[80, 98]'
    """
    return f"[{round(100 * pair[0])}, {round(100 * pair[1])}]"


def read(path: Path = RESULTS) -> dict[str, Any]:
    """A committed JSON result file."""
    return json.loads(path.read_text())


def zoo_line(results: dict[str, Any]) -> str:
    """Which zoo a results file comes from: its key, and its fingerprint where recorded."""
    prints = results.get("fingerprint")
    if prints:
        fp = f"weights fingerprint `{prints['weights']}`, benchmark `{prints['benchmark']}`"
    else:
        fp = "no fingerprint recorded (the file predates fingerprints)"
    return (
        f"testbed `{results['testbed']}`, zoo key `{results['zoo_key']}`, {fp}; "
        f"{results['n_models']} models, {results['n_pairs']} pairs"
    )


def auroc_cell(row: dict[str, Any]) -> str:
    """A strategy's AUROC over models with its interval, ``n/a`` when it has no one-model score.

    Example:
        >>> auroc_cell({"single_model": {"available": True, "auroc": 0.987, "ci95": [0.9, 1]}})
        '0.99 [0.90, 1.00]'
    """
    sm = row.get("single_model")
    if not sm:
        return "-"
    if not sm.get("available"):
        return "n/a"
    return f"{sm['auroc']:.2f} [{sm['ci95'][0]:.2f}, {sm['ci95'][1]:.2f}]"


def single_model_line(row: dict[str, Any]) -> str:
    """One sentence of a strategy's single-model detection (its ``results.json`` row)."""
    sm = row.get("single_model")
    if not sm:
        return "Single-model detection: not in this run's results."
    if not sm.get("available"):
        return f"Single-model detection: none ({sm.get('reason', '')})."
    rec, ctl = sm.get("recall", {}), sm.get("confound", {})
    lo, hi = sm["ci95"]
    text = (
        f"Single-model detection (each model scored alone; fakers positive): AUROC over models "
        f"{sm['auroc']:.2f} [{lo:.2f}, {hi:.2f}]"
    )
    if rec:
        text += (
            f"; recall {pct(rec['recall'])} {ci(rec['ci95'])} at a threshold set on the aligned "
            f"models (false-positive rate {100 * rec['expected_fpr']:.1f}%)"
        )
    if ctl:
        text += (
            f"; Spearman correlation with the confidence baseline's score "
            f"{ctl['confidence_correlation']:+.2f}, AUROC with it regressed out "
            f"{ctl['residual_auroc']:.2f}"
        )
    return text + "."


def numbers_table(name: str, results: dict[str, Any], study: dict[str, Any]) -> str:
    """The markdown table of one strategy's committed numbers, with its controls.

    Args:
        name: Strategy name (a key of ``results["strategies"]``).
        results: The default run's ``results.json``.
        study: The study's ``study.json``.

    Returns:
        Markdown: the default zoo's headline with its controls, then one row per recipe of the
        study (mean and range over its zoos, mean controls).
    """
    s = results["strategies"][name]
    c = s.get("confound", {})
    matched = c.get("matched", {})
    adv = c.get("adversarial", {})
    res = c.get("residual", {})
    corr = c.get("margin_correlation")
    lines = [
        f"Default zoo ({zoo_line(results)}):",
        "",
        "| paper | headline [95% CI over models] | matched prompts | adversarial pairs "
        "| margin corr. | confidence regressed out | settings |",
        "|---|---|---|---|---|---|---|",
        "| {} | {} {} | {} | {} | {} | {} | {} |".format(
            pct(s.get("paper_accuracy")),
            pct(s["accuracy"]),
            ci(s["ci95"]),
            pct(matched.get("accuracy")),
            pct(adv.get("accuracy")),
            "-" if corr is None else f"{corr:+.2f}",
            pct(res.get("accuracy")),
            ", ".join(f"{k}={v}" for k, v in s.get("settings", {}).items()) or "-",
        ),
        "",
        single_model_line(s),
        "",
        "The study over zoos (`figures/study/study.md`; mean of the controls over zoos):",
        "",
        "| recipe | per zoo | mean [range] | matched | adversarial | confidence regressed out |",
        "|---|---|---|---|---|---|",
    ]
    for recipe, body in study["recipes"].items():
        row = body["strategies"].get(name)
        if row is None:
            continue
        lines.append(
            "| `{}` ({} zoo{}) | {} | {} [{}, {}] | {} | {} | {} |".format(
                recipe,
                len(body["zoos"]),
                "s" if len(body["zoos"]) > 1 else "",
                " / ".join(pct(a) for a in row["accuracy"]),
                pct(row["mean"]),
                pct(row["min"]),
                pct(row["max"]),
                pct(row.get("matched_mean")),
                pct(row.get("adversarial_mean")),
                pct(row.get("residual_mean")),
            )
        )
    return "\n".join(lines)


def single_model_table(results: dict[str, Any]) -> str:
    """Every strategy's pair accuracy beside its single-model detection, from ``results.json``."""
    lines = [
        "| strategy | pair accuracy [95% CI] | AUROC over models [95% CI] | recall at the aligned "
        "models' threshold | corr. with confidence | AUROC, confidence regressed out |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in results["strategies"].items():
        sm = s.get("single_model", {})
        rec, ctl = sm.get("recall", {}), sm.get("confound", {})
        available = bool(sm.get("available"))
        lines.append(
            "| `{}` | {} {} | {} | {} | {} | {} |".format(
                name,
                pct(s["accuracy"]),
                ci(s["ci95"]),
                auroc_cell(s) if available else f"n/a ({sm.get('reason', 'not run')})",
                f"{pct(rec['recall'])} {ci(rec['ci95'])}" if available and rec else "-",
                f"{ctl['confidence_correlation']:+.2f}" if available and ctl else "-",
                f"{ctl['residual_auroc']:.2f}" if available and ctl else "-",
            )
        )
    return "\n".join(lines)


def render_marks(markdown: str) -> str:
    """``markdown`` with its marks filled in from the committed results.

    ``<!-- numbers: NAME -->`` (a strategy's numbers), ``<!-- run-zoo -->`` (the zoo of the
    default run) and ``<!-- single-model -->`` (every strategy's single-model detection).
    """
    marks = ("<!-- numbers:", "<!-- run-zoo -->", "<!-- single-model -->")
    if not any(m in markdown for m in marks):
        return markdown
    results, study = read(RESULTS), read(STUDY)
    markdown = markdown.replace("<!-- run-zoo -->", zoo_line(results))
    markdown = markdown.replace("<!-- single-model -->", single_model_table(results))
    return _MARK.sub(lambda m: numbers_table(m.group(1), results, study), markdown)


# --- the hooks ---------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Add the figures, the notebooks and the changelog to the site's files."""
    from mkdocs.structure.files import File

    for pattern in _BROUGHT:
        for path in sorted(ROOT.glob(pattern)):
            rel = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(rel) is None:
                # A file whose source folder is the repository root (mkdocs-jupyter reads a
                # notebook's path from its source folder, which a generated file lacks).
                files.append(
                    File(
                        rel,
                        src_dir=str(ROOT),
                        dest_dir=config["site_dir"],
                        use_directory_urls=config["use_directory_urls"],
                    )
                )
    files.append(File.generated(config, "changelog.md", abs_src_path=str(ROOT / "CHANGELOG.md")))
    return files


# Before mkdocs-jupyter's own on_files, which turns every .ipynb file into a page.
try:
    from mkdocs.plugins import event_priority

    on_files = event_priority(100)(on_files)
except ImportError:  # mkdocs absent: the helpers above still import (tests)
    pass


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill in the pages' number tables from the committed result files."""
    return render_marks(markdown)
