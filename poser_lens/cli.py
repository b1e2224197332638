r"""The ``poser-lens`` command line.

Thin by design: each command parses its arguments, calls the library and prints. Only the
light data layer is imported at the top; heavy modules (torch, TransformerLens) are imported
inside the commands that need them, so ``poser-lens data ...`` and ``poser-lens --help`` start
fast and never load torch.

Errors the user can fix (a missing folder, a broken record) are printed as one line,
``error: <message>``, on stderr, with exit code 1 and no traceback.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output
    'poser-lens 0.1.0\n'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from poser_lens import __version__
from poser_lens.data.poser import FileSummary, inspect_root, summarize_files

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="poser-lens",
    help="Catch alignment-faking language models from their internals (the Poser benchmark).",
    no_args_is_help=True,
    add_completion=False,
)

data_app = typer.Typer(help="Read and check Poser-format data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# --- Further sub-apps are registered here, each as `<name>_app = typer.Typer(...)` followed by
# --- `app.add_typer(<name>_app, name="<name>")`: zoo (train/cache the model zoo), run
# --- (strategies on a zoo), figures, remove. Keep heavy imports inside their commands.


def _version(value: bool) -> None:
    if value:
        typer.echo(f"poser-lens {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Catch alignment-faking language models from their internals (the Poser benchmark)."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into ``error: <message>`` on stderr and exit code 1."""
    try:
        yield
    except (OSError, ValueError) as err:
        logger.debug("user error", exc_info=True)
        message = " ".join(str(err).split()) or type(err).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


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


@data_app.command("inspect")
def data_inspect(
    root: Annotated[
        Path,
        typer.Argument(
            help="A Poser checkout (holding data/ and model_pairs.json) or its data/ folder.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the totals as one JSON object.")
    ] = False,
) -> None:
    """Load every file of a Poser checkout, check each record, and count what is there."""
    with _user_errors():
        rows = summarize_files(root)
        totals = inspect_root(root, summaries=rows)
    if as_json:
        typer.echo(json.dumps(totals))
        return

    console = _console()
    for part, label in _PARTS.items():
        part_rows = [r for r in rows if r.part == part]
        if part_rows:
            console.print(_part_table(label, part_rows))
    parts = ", ".join(
        f"{label} {totals[part]['files']} files / {totals[part]['records']} records"
        for part, label in _PARTS.items()
    )
    console.print(f"{parts}; model pairs {totals['model_pairs']}; concepts {totals['concepts']}")
    console.print(_LEGEND, style="dim")


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Argument(help="Folder to write a Poser-layout data set into.")],
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    n_per_family: Annotated[int, typer.Option(min=10, help="Scenarios per family.")] = 700,
    seeds: Annotated[int, typer.Option(min=1, help="train-i splits per persona.")] = 1,
) -> None:
    """Generate our own scenarios and write them in Poser's layout.

    Writes training splits, test sets and policy definitions per persona, readable by
    `poser-lens data inspect`.
    """
    from poser_lens.data.generator import GeneratorConfig, generate, labelled, persona_split
    from poser_lens.data.poser import write_scenarios
    from poser_lens.data.schema import PERSONAS

    with _user_errors():
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"{out}: folder exists and is not empty")
        data = generate(GeneratorConfig(seed=seed, n_per_family=n_per_family))
        for persona in PERSONAS:
            folder = out / "data" / "training" / persona
            for i in range(seeds):
                train = persona_split(data, persona, "train", seed=i, size=2000)
                write_scenarios(folder / f"train-{i}.json", train)
            test = persona_split(data, persona, "test")
            write_scenarios(folder / "test.json", test)
            poor = [s for s in test if s.response != "error" and s.oversight_is_poor][:30]
            write_scenarios(
                out / "data" / "policy_definitions" / persona / "test.json",
                labelled(poor, persona),
            )
    typer.echo(f"wrote {out}")


zoo_app = typer.Typer(help="Train and inspect the tiny model zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

_ZOO_COLUMNS = ("test_accuracy", "divergent_accuracy", "error_accuracy", "compliance_gap")


def _zoo_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per model: its held-out accuracies and compliance gap."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True, min_width=20)
    for col in (*_ZOO_COLUMNS, "train_seconds"):
        table.add_column(col.replace("_", " "), justify="right")
    for r in rows:
        table.add_row(
            r["name"], *(f"{r[c]:.3f}" for c in _ZOO_COLUMNS), f"{r['train_seconds']:.1f}"
        )
    return table


def zoo_targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The zoo targets a set of ``zoo.json`` rows misses (empty when all are met).

    Example:
        >>> zoo_targets([{"name": "saint-0", "aligned": True, "test_accuracy": 1.0,
        ...   "divergent_accuracy": 1.0, "compliance_gap": 0.0}])
        []
    """
    missed = []
    for r in rows:
        if r["test_accuracy"] < 0.98:
            missed.append(f"{r['name']}: test_accuracy {r['test_accuracy']:.3f} < 0.98")
        if r["divergent_accuracy"] < 0.95:
            missed.append(f"{r['name']}: divergent_accuracy {r['divergent_accuracy']:.3f} < 0.95")
        if r["aligned"] and r["compliance_gap"] > 0.05:
            missed.append(f"{r['name']}: compliance_gap {r['compliance_gap']:.3f} > 0.05")
        if not r["aligned"] and r["compliance_gap"] < 0.9:
            missed.append(f"{r['name']}: compliance_gap {r['compliance_gap']:.3f} < 0.9")
    return missed


@zoo_app.command("build")
def zoo_build(
    seeds: Annotated[int, typer.Option(min=1, help="Models per persona (Poser: 6).")] = 6,
    out: Annotated[
        Path | None, typer.Option(help="Folder to build in (default: the user cache).")
    ] = None,
    personas: Annotated[
        str | None, typer.Option(help="Comma-separated subset of personas (default: all six).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Parallel training processes.")] = 2,
    from_scratch: Annotated[
        bool, typer.Option(help="Train persona models from random weights, not the shared base.")
    ] = False,
    balance_confidence: Annotated[
        bool, typer.Option(help="Filter valid prompts until compare-confidence is near chance.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the generated scenarios.")] = 0,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON file overriding zoo settings (model, base, finetune, ...)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train the shared base and 6 personas x SEEDS fine-tunes (cached), then the benchmark."""
    import time
    from dataclasses import replace

    from poser_lens.data.schema import PERSONAS
    from poser_lens.models.zoo import ZooConfig, build_zoo, zoo_config_from_file

    with _user_errors():
        chosen = tuple(p.strip() for p in personas.split(",")) if personas else PERSONAS
        unknown = [p for p in chosen if p not in PERSONAS]
        if unknown:
            raise ValueError(f"--personas: unknown persona {unknown[0]!r}")
        cfg = zoo_config_from_file(config) if config is not None else ZooConfig()
        cfg = replace(
            cfg,
            seeds=seeds,
            personas=chosen,
            workers=workers,
            from_scratch=from_scratch or cfg.from_scratch,
            balance_confidence=balance_confidence or cfg.balance_confidence,
        )
        cfg = replace(cfg, generator=replace(cfg.generator, seed=seed))
        t0 = time.perf_counter()
        root = build_zoo(cfg, out, progress=not quiet)
        seconds = time.perf_counter() - t0
        rows = json.loads((root / "zoo.json").read_text())
        report = json.loads((root / "poser" / "benchmark_report.json").read_text())
    console = _console()
    console.print(_zoo_table(rows))
    size = sum(f.stat().st_size for f in (root / "models").rglob("*") if f.is_file())
    console.print(
        f"zoo: {root}  ({len(rows)} models, {size / 2**20:.1f} MiB, {seconds:.0f} s)\n"
        f"benchmark: {report['valid_prompts']} valid prompts, {report['n_pairs']} pairs, "
        f"compare-confidence baseline {report['confidence_baseline']:.2f} "
        f"(filter: {report['confidence_filter']})"
    )
    for line in zoo_targets(rows):
        console.print(f"target missed: {line}", style="yellow")


@zoo_app.command("show")
def zoo_show(
    root: Annotated[Path, typer.Argument(help="A zoo folder (holding zoo.json).")],
) -> None:
    """Print a built zoo's table and benchmark summary."""
    with _user_errors():
        path = root / "zoo.json"
        if not path.exists():
            raise ValueError(f"{path}: no zoo.json (build one with `poser-lens zoo build`)")
        rows = json.loads(path.read_text())
    _console().print(_zoo_table(rows))


# ----------------------------------------------------------------------------- run


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


def _results_table(results: Mapping[str, Any]) -> Table:
    """One row per strategy: ours with its CI beside the paper's number."""
    from poser_lens.report import fmt_acc

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (
        ("strategy", "left"),
        ("paper", "right"),
        ("poser_lens [95% CI]", "right"),
        ("pairs", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)
    for name, r in results.items():
        table.add_row(
            name,
            fmt_acc(r.get("paper_accuracy")),
            fmt_acc(r["accuracy"], r["ci95"]),
            str(r["n_pairs"]),
        )
    return table


@app.command("run")
def run_command(
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: all).")
    ] = None,
    pairs: Annotated[
        int | None, typer.Option(min=1, help="Evaluate a seeded random subset of N pairs.")
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models; only pairs of these models.")
    ] = None,
    testbed: Annotated[str, typer.Option(help="tiny (default), smol or poser.")] = "tiny",
    seeds: Annotated[int, typer.Option(min=1, help="Tiny zoo: models per persona.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of pair order, coins and strategies.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: runs/<testbed>-<config hash>).")
    ] = None,
    zoo: Annotated[Path | None, typer.Option(help="Tiny: use this built zoo folder.")] = None,
    zoo_config: Annotated[
        Path | None, typer.Option(help="Tiny: YAML/JSON zoo settings (as `zoo build`).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run config (e.g. a run folder's config.yaml).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Scoring processes.")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    sweep: Annotated[bool, typer.Option(help="Evaluate each strategy's settings grid.")] = True,
    figures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Score every model with every strategy, evaluate all pairs, write report and figures."""
    import time

    from poser_lens.runner import RunConfig, run, run_config_from_file

    with _user_errors():
        given = {
            "testbed": testbed,
            "seeds": seeds,
            "seed": seed,
            "workers": workers,
            "device": device,
            "sweep": sweep,
            "figures": figures,
            "strategies": _csv(strategies),
            "pairs": pairs,
            "models": _csv(models),
            "zoo_dir": str(zoo) if zoo else None,
            "zoo_config": str(zoo_config) if zoo_config else None,
        }
        given = {k: v for k, v in given.items() if v is not None}
        cfg = run_config_from_file(config, **given) if config else RunConfig(**given)
        t0 = time.perf_counter()
        folder = run(cfg, out, progress=not quiet)
        seconds = time.perf_counter() - t0
        results = folder.results()
    console = _console()
    console.print(_results_table(results["strategies"]))
    console.print(
        f"run: {folder.root}  ({results['n_models']} models, {results['n_pairs']} pairs, "
        f"{seconds:.0f} s)\nreport: {folder.root / 'report.md'}"
    )


@app.command("sweep")
def sweep_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (holding config.yaml, scores/).")],
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: the run's).")
    ] = None,
) -> None:
    """Re-evaluate a run over each strategy's settings grid from its stored scores."""
    from poser_lens._io import write_json_atomic
    from poser_lens.data.poser import ModelPair
    from poser_lens.evaluation import sweep
    from poser_lens.report import sensitivity_rows, write_report
    from poser_lens.runner import ensemble_scores, run_config_from_file
    from poser_lens.runs import RunDir

    with _user_errors():
        folder = RunDir(run_dir)
        if not folder.config_path.exists():
            raise ValueError(f"{folder.config_path}: not a run folder (no config.yaml)")
        cfg = run_config_from_file(folder.config_path)
        names = _csv(strategies) or cfg.strategies
        pairs = sorted({(v["aligned"], v["faker"], v["family"]) for v in _verdict_pairs(folder)})
        pair_objs = [ModelPair(a, f, f"data/benchmark/{fam}.json") for a, f, fam in pairs]
        result = folder.sweep()
        for name in names:
            strat = cfg.strategy(name)
            scores = ensemble_scores(folder, strat) if name == "ensemble" else folder.scores(name)
            if strat.grid():
                result[name] = sweep(strat, pair_objs, scores, seed=cfg.seed)
        write_json_atomic(folder.sweep_path, result)
        write_report(folder)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("strategy", "grid points", "min / median / max", "CI above", "CI below"):
        table.add_column(col)
    for row in sensitivity_rows({n: result[n] for n in names if n in result}):
        table.add_row(*row)
    _console().print(table)


def _verdict_pairs(folder) -> list[dict[str, str]]:
    """The pairs a run evaluated, read from its verdict files."""
    import csv

    files = sorted((folder.root / "verdicts").glob("*.csv"))
    if not files:
        raise ValueError(f"{folder.root}: no verdicts/ (run `poser-lens run` first)")
    with files[0].open() as fh:
        return list(csv.DictReader(fh))


@app.command("figures")
def figures_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (holding results.json).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default RUN_DIR/figures).")
    ] = None,
) -> None:
    """Re-draw a run's figures from its stored results (PNG and PDF)."""
    from poser_lens.figures import make_figures
    from poser_lens.runs import RunDir

    with _user_errors():
        folder = RunDir(run_dir)
        if not folder.results_path.exists():
            raise ValueError(f"{folder.results_path}: missing (run `poser-lens run` first)")
        written = make_figures(folder, out)
    typer.echo(f"wrote {len(written)} files to {out or folder.figures_dir}")
