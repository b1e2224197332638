"""Compare two run folders: are their results the same, timings aside?

Runs made since issue 18 keep every timing in ``timings.json`` (never compared), so two runs
of the same settings on one machine have byte-identical results; older runs embedded
``seconds`` in their results, scores and report, which this script leaves out so an old run
compares with a new one. Compares ``results.json`` (``seconds`` entries, the zoo folder path
and the fingerprint left out, as two machines' zoos differ bitwise), ``sweep.json``,
``verdicts/*.csv`` (bytes), every ``scores/**/*.json`` (``seconds`` left out) and
``report.md`` (its old ``## Time`` section and fingerprint line left out); prints SAME or DIFF
per part and exits 1 on any difference. Used to show that a restructuring changed no result
(issue 15: the default run before and after).

Run: ``python benchmarks/compare_runs.py BASE_RUN NEW_RUN``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def strip(obj: Any) -> Any:
    """``obj`` without its ``seconds`` entries (wall-clock timings), recursively."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def main() -> None:
    """Compare the two folders given on the command line."""
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    bad = 0
    for name in ("results.json", "sweep.json"):
        x, y = (strip(json.loads((r / name).read_text())) for r in (a, b))
        if name == "results.json":
            for key in ("zoo", "fingerprint"):
                x.pop(key, None)
                y.pop(key, None)
        bad += x != y
        print(("SAME " if x == y else "DIFF ") + name)
    names = sorted(p.name for p in (a / "verdicts").glob("*.csv"))
    diff = [
        n
        for n in names
        if not (b / "verdicts" / n).exists()
        or (a / "verdicts" / n).read_bytes() != (b / "verdicts" / n).read_bytes()
    ]
    bad += bool(diff)
    print(("SAME " if not diff else "DIFF ") + f"verdicts ({len(names)} files) {diff[:5]}")
    files = sorted((a / "scores").rglob("*.json"))
    differ = [
        p
        for p in files
        if not (b / "scores" / p.relative_to(a / "scores")).exists()
        or strip(json.loads(p.read_text()))
        != strip(json.loads((b / "scores" / p.relative_to(a / "scores")).read_text()))
    ]
    bad += bool(differ)
    print(
        ("SAME " if not differ else "DIFF ") + f"scores ({len(files)} files, {len(differ)} differ)"
    )
    x, y = (report_text(r / "report.md") for r in (a, b))
    bad += x != y
    print(("SAME " if x == y else "DIFF ") + "report.md")
    sys.exit(1 if bad else 0)


def report_text(path: Path) -> str:
    """A report without its timings (old runs' ``## Time`` section) and fingerprint line."""
    if not path.exists():
        return ""
    lines, skip = [], False
    for line in path.read_text().split("\n"):
        if line.startswith("## "):
            skip = line == "## Time"
        if not skip and not line.startswith("Zoo `"):
            lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
