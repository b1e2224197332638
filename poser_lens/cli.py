r"""The ``poser-lens`` command line.

Thin by design: each command parses its arguments, calls the library and prints. Only the
light data layer is imported at the top; heavy modules (torch, TransformerLens) are imported
inside the commands that need them, so ``poser-lens data ...`` and ``poser-lens --help`` start
fast and never load torch.

Every error is printed as one line, ``error: <message>``, on stderr, with exit code 1 and no
traceback: errors the user can fix (a missing folder, a broken record, a bad setting) with
their message, which names the file, record or option; any other error with its type and a
hint. ``poser-lens --debug ...`` (or ``POSER_LENS_DEBUG=1``) shows the traceback instead.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output
    'poser-lens 0.1.0\n'
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from poser_lens import __version__
from poser_lens._pool import RAY_LOCAL
from poser_lens.data.poser import FileSummary, inspect_root, summarize_files

try:  # typer vendors its own click (0.2x); older typers use click's exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Whether ``--debug`` (or ``POSER_LENS_DEBUG``) asks for tracebacks instead of one line.
_DEBUG = {"on": False}


def _debugging() -> bool:
    return _DEBUG["on"] or os.environ.get("POSER_LENS_DEBUG", "") not in ("", "0")


@contextmanager
def _user_errors(ctx: Any = None) -> Iterator[None]:
    """Turn any error into ``error: <message>`` on stderr and exit code 1 (no traceback).

    Errors a user can fix (``OSError``, ``ValueError``: a missing folder, a bad setting, a
    broken file) print their own message, which names the input; any other error prints its
    type and message, the command, and how to see the traceback (in the command group,
    :class:`_OneLineErrors`, which passes ``ctx``). With ``--debug`` (or
    ``POSER_LENS_DEBUG=1``) the error propagates, traceback and all.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
        raise  # the command line's own exits and usage errors
    except Exception as err:
        user_error = isinstance(err, (OSError, ValueError))
        if _debugging() or (not user_error and ctx is None):
            raise  # the traceback; or an unexpected error, for the group to name the command
        logger.debug("error", exc_info=True)
        message = " ".join(str(err).split()) or type(err).__name__
        if not user_error:
            command = ctx.invoked_subcommand if ctx is not None else None
            where = f" in `poser-lens {command}`" if command else ""
            message = (
                f"{type(err).__name__}: {message} (an unexpected error{where}; rerun with "
                "--debug, or POSER_LENS_DEBUG=1, for the traceback)"
            )
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


class _OneLineErrors(typer.core.TyperGroup):
    """The top-level command group: every command's errors become one line.

    That includes the command line's own usage errors (an option that does not parse, an
    unknown option, a missing argument): ``error: Invalid value for '--seeds': ... (see
    `poser-lens run --help`)`` and exit code 2, not click's usage box.
    """

    def invoke(self, ctx: Any) -> Any:
        """Run the command line, turning any error into one line (:func:`_user_errors`)."""
        with _user_errors(ctx):
            return super().invoke(ctx)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode, usage errors print as one line."""
        run = functools.partial(
            super().main, args, prog_name, complete_var, False, windows_expand_args, **extra
        )
        if not standalone_mode:
            return run()
        try:
            result = run()
        except click_exceptions.NoArgsIsHelpError as err:
            err.show()  # a group called without its command: its help
            sys.exit(err.exit_code)
        except click_exceptions.ClickException as err:
            if _debugging():
                raise
            message = " ".join(err.format_message().split())
            ctx = getattr(err, "ctx", None)
            if isinstance(err, click_exceptions.UsageError) and ctx is not None:
                message += f" (see `{ctx.command_path} --help`)"
            typer.echo(f"error: {message}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="poser-lens",
    help="Catch alignment-faking language models from their internals (the Poser benchmark).",
    no_args_is_help=True,
    add_completion=False,
    cls=_OneLineErrors,
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
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of an error (also: POSER_LENS_DEBUG=1)."),
    ] = False,
) -> None:
    """Catch alignment-faking language models from their internals (the Poser benchmark)."""
    _DEBUG["on"] = debug


class _RayCommand(typer.core.TyperCommand):
    """A command whose ``--ray`` option may go without its value (``--ray`` = ``--ray local``).

    Typer has no options with an optional value, so a bare ``--ray`` (last, or followed by
    another option) gets :data:`~poser_lens._pool.RAY_LOCAL` before parsing.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse ``args`` with ``local`` put after a bare ``--ray``."""
        args = list(args)
        for i, arg in enumerate(args):
            if arg == "--":
                break
            if arg == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                args.insert(i + 1, RAY_LOCAL)
                break
        return super().parse_args(ctx, args)


#: The ``--ray [ADDRESS]`` option of the commands that fan out over models.
RayOption = Annotated[
    str | None,
    typer.Option(
        metavar="[ADDRESS]",
        help="Run the per-model jobs as Ray tasks (needs the ray extra; one GPU each with "
        "--device cuda): alone, on a new local Ray instance; with ADDRESS, on that cluster "
        "(auto, HOST:6379 or ray://HOST:10001), whose nodes share this machine's folders.",
        show_default=False,
    ),
]


#: Settings whose command-line option is not ``--<setting with dashes>``.
_OPTIONS = {
    "zoo_dir": "--zoo",
    "methods": "--method",
    "n_requests": "--requests",
    "n_samples": "--samples",
}


def _file_sets(path: Path | None, key: str) -> bool:
    """Whether the YAML/JSON config file ``path`` (if any) sets ``key`` at its top level."""
    if path is None or not Path(path).is_file():
        return False
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError:
        return False  # the config's own reader names the problem
    return isinstance(data, dict) and key in data


def _from_options(build: Callable[[], T], given: Mapping[str, Any] = {}) -> T:
    """``build()`` (a config), with a bad setting given on the command line named as its option.

    A :class:`~poser_lens.config.ConfigError` for a setting in ``given`` (the options the user
    set) reads ``--workers: must be >= 1, got -3``; one read from a config file keeps naming
    the file and key.
    """
    from poser_lens.config import ConfigError

    try:
        return build()
    except ConfigError as err:
        top = re.split(r"[.\[]", err.key)[0]
        if err.where is not None or top not in given:
            raise
        option = _OPTIONS.get(top, "--" + top.replace("_", "-"))
        raise ValueError(f"{option}: {err.problem}") from None


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
    from poser_lens._io import check_writable
    from poser_lens.data.generator import GeneratorConfig, generate, labelled, persona_split
    from poser_lens.data.poser import write_scenarios
    from poser_lens.data.schema import PERSONAS

    with _user_errors():
        check_writable(out, "output folder")
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


@data_app.command("confound")
def data_confound(
    root: Annotated[
        Path,
        typer.Argument(
            help="A Poser checkout (holding data/ and model_pairs.json), its data/ folder, "
            "or a zoo's poser/ folder.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
    balanced: Annotated[
        Path | None,
        typer.Option(
            "--balanced",
            metavar="OUT",
            help="Also write a confidence-balanced copy of the checkout to OUT (new or empty).",
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.5, help="--balanced: largest |accuracy - 0.5| of every statistic."
        ),
    ] = 0.1,
    min_keep: Annotated[
        int, typer.Option(min=1, help="--balanced: fewest prompts a family keeps.")
    ] = 40,
) -> None:
    """How often the less confident model of a pair is the faker (compare-confidence baseline).

    Scores every pair of model_pairs.json on its benchmark file's stored probabilities, by
    four statistics (mean and minimum probability, median log-odds, per-prompt vote). With
    --balanced, writes a copy whose benchmark files keep, per family, prompts on which every
    statistic is near chance.
    """
    from poser_lens.data.confound import balanced_benchmark, confound_report

    with _user_errors():
        if balanced is None:
            report = confound_report(root)
            summary = None
        else:
            summary = balanced_benchmark(root, balanced, tolerance=tolerance, min_keep=min_keep)
            report = summary["before"]
    if as_json:
        typer.echo(json.dumps(report))
        if summary is not None:
            typer.echo(f"wrote {balanced}", err=True)
        return

    console = _console()
    for table in _confound_tables(report, f"compare-confidence baseline: {report['pairs']} pairs"):
        console.print(table)
    if summary is not None:
        for table in _confound_tables(summary["after"], f"balanced copy {balanced}"):
            console.print(table)
        kept = ", ".join(
            f"{name} {row['kept']}/{row['records']}" + ("" if row["balanced"] else " (unbalanced)")
            for name, row in summary["families"].items()
        )
        console.print(f"kept prompts: {kept}")
        console.print(f"wrote {balanced}")
    console.print(
        "accuracy: share of pairs where the statistic calls the faker less confident (ties "
        "count half); chance is 0.5.",
        style="dim",
    )


zoo_app = typer.Typer(help="Train and inspect the tiny model zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

_ZOO_COLUMNS = ("test_accuracy", "divergent_accuracy", "error_accuracy", "compliance_gap")


def _zoo_rows(root: Path) -> list[dict[str, Any]]:
    """A built zoo's ``zoo.json`` rows, checked: a non-empty list of model rows.

    Raises:
        ValueError: One line naming the file (and the row), if it is not a zoo's table.
    """
    from poser_lens._io import read_json

    path = root / "zoo.json"
    if not path.is_file():
        raise ValueError(f"{path}: no zoo.json (build one with `poser-lens zoo build`)")
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: not a zoo's table (expected a non-empty list of model rows)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
        for key in ("name", *_ZOO_COLUMNS, "train_seconds"):
            value = row.get(key)
            ok = isinstance(value, str) if key == "name" else isinstance(value, (int, float))
            if not ok or isinstance(value, bool):
                what = (
                    "missing"
                    if key not in row
                    else f"not a {'name' if key == 'name' else 'number'}: {value!r}"
                )
                raise ValueError(f"{path}: row {i}: {key} {what}")
    return rows


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


def _print_zoo(root: Path, seconds: float, *, label: str) -> list[dict[str, Any]]:
    """Print a built zoo's table and one summary line; returns its ``zoo.json`` rows."""
    from poser_lens._io import read_json

    rows = _zoo_rows(root)
    report = read_json(root / "poser" / "benchmark_report.json")
    console = _console()
    console.print(_zoo_table(rows))
    size = sum(f.stat().st_size for f in (root / "models").rglob("*") if f.is_file())
    line = (
        f"{label}: {root}  ({len(rows)} models, {size / 2**20:.1f} MiB, {seconds:.0f} s)\n"
        f"benchmark: {report['valid_prompts']} valid prompts, {report['n_pairs']} pairs"
    )
    if "confidence_baseline" in report:
        line += (
            f", compare-confidence baseline {report['confidence_baseline']:.2f} "
            f"(filter: {report.get('confidence_filter', 'none')})"
        )
    stats = report.get("confidence_statistics", {})
    if stats:
        line += "\ncompare-confidence by statistic [95% CI over models]: " + ", ".join(
            f"{k} {v['accuracy']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]"
            for k, v in stats.items()
        )
    console.print(line)
    return rows


def _zoo_build_smol(
    personas: str | None,
    seeds: int,
    out: Path | None,
    device: str,
    data: Path | None,
    steps: int | None,
    seed: int,
    quiet: bool,
    config: Path | None,
    recipe: str | None,
) -> None:
    """``zoo build --testbed smol``: LoRA persona adapters over SmolLM2-135M."""
    import time
    from dataclasses import replace

    from poser_lens._io import check_writable
    from poser_lens.models.smol_zoo import (
        CONCEPT_RECIPE,
        SMOL_TARGETS,
        SmolZooConfig,
        build_smol_zoo,
    )
    from poser_lens.testbeds import check_device

    with _user_errors():
        if recipe not in (None, "shipped", "concept"):
            raise ValueError(f"--recipe {recipe!r}: the smol testbed has shipped or concept")
        cfg = SmolZooConfig.from_file(config) if config is not None else SmolZooConfig()
        if recipe == "concept":  # the recipe's settings, under any the file sets itself
            import yaml

            given = yaml.safe_load(config.read_text()) if config is not None else {}
            keep = set(given) if isinstance(given, dict) else set()
            cfg = replace(cfg, **{k: v for k, v in CONCEPT_RECIPE.items() if k not in keep})
        if data is not None and not data.is_dir():
            raise ValueError(f"--data {data}: no such folder")
        # The tiny default of --seeds (6) would mean 36 models of ~13 min each on a CPU.
        changes: dict[str, Any] = {
            "seeds": seeds if seeds != 6 else cfg.seeds,
            "personas": _csv(personas) if personas else cfg.personas,
            "device": device,
            "data": str(data) if data is not None else None,
            "steps": steps or cfg.steps,
        }
        cfg = _from_options(lambda: replace(cfg, **changes), changes)
        cfg = replace(cfg, generator=replace(cfg.generator, seed=seed))
        check_device(cfg.device)
        if out is not None:
            check_writable(out, "zoo folder")
        t0 = time.perf_counter()
        root = build_smol_zoo(cfg, out, progress=not quiet)
    rows = _print_zoo(root, time.perf_counter() - t0, label="smol zoo")
    for line in SMOL_TARGETS.missed(rows):
        _console().print(f"target missed: {line}", style="yellow")
    _console().print(f"score it: poser-lens run --testbed smol --zoo {root}")


@zoo_app.command("build", cls=_RayCommand)
def zoo_build(
    seeds: Annotated[int, typer.Option(min=1, help="Models per persona (Poser: 6).")] = 6,
    out: Annotated[
        Path | None, typer.Option(help="Folder to build in (default: the user cache).")
    ] = None,
    personas: Annotated[
        str | None, typer.Option(help="Comma-separated subset of personas (default: all six).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Parallel training processes.")] = 2,
    ray: RayOption = None,
    from_scratch: Annotated[
        bool, typer.Option(help="Train persona models from random weights, not the shared base.")
    ] = False,
    balance_confidence: Annotated[
        bool, typer.Option(help="Filter valid prompts until compare-confidence is near chance.")
    ] = False,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="matched (default: every persona trained to the same answer confidence) or "
            "hard (plain labels; fakers end up less confident). Smol: shipped (default, the "
            "recipe of the shipped zoo) or concept (varied banks, stacked bfloat16 training, "
            "the held-out bank)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated scenarios.")] = 0,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON file overriding zoo settings (model, base, finetune, ...)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    testbed: Annotated[
        str, typer.Option(help="tiny (default) or smol (SmolLM2-135M LoRA personas).")
    ] = "tiny",
    device: Annotated[str, typer.Option(help="Smol: cpu or cuda.")] = "cpu",
    data: Annotated[
        Path | None, typer.Option(help="Smol: train on this Poser checkout's training files.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Smol: optimiser steps per model (default 1200).")
    ] = None,
) -> None:
    """Train the shared base and 6 personas x SEEDS fine-tunes (cached), then the benchmark.

    With ``--testbed smol``: retrain the LoRA persona adapters over SmolLM2-135M (default: the
    six personas, one seed, as shipped with poser_lens; ``--personas``/``--seeds`` choose),
    resumable; use the result with ``run --testbed smol --zoo FOLDER``.
    """
    import time
    from dataclasses import replace

    from poser_lens._io import check_writable
    from poser_lens.data.schema import PERSONAS
    from poser_lens.models.zoo import ZooConfig, build_zoo
    from poser_lens.models.zoo_base import ZooTargets

    if testbed == "smol":
        if ray is not None:
            with _user_errors():
                raise ValueError("--ray: the smol zoo trains in one process (tiny zoo only)")
        _zoo_build_smol(personas, seeds, out, device, data, steps, seed, quiet, config, recipe)
        return
    with _user_errors():
        if testbed != "tiny":
            raise ValueError(f"--testbed {testbed!r}: expected tiny or smol")
        cfg = ZooConfig.from_file(config) if config is not None else ZooConfig()
        changes: dict[str, Any] = {
            "seeds": seeds,
            "personas": _csv(personas) if personas else PERSONAS,
            "workers": workers,
            "ray": ray,
            "from_scratch": from_scratch or cfg.from_scratch,
            "balance_confidence": balance_confidence or cfg.balance_confidence,
            "recipe": recipe or cfg.recipe,
        }
        cfg = _from_options(lambda: replace(cfg, **changes), changes)
        cfg = replace(cfg, generator=replace(cfg.generator, seed=seed))
        if out is not None:
            check_writable(out, "zoo folder")
        t0 = time.perf_counter()
        root = build_zoo(cfg, out, progress=not quiet)
    rows = _print_zoo(root, time.perf_counter() - t0, label="zoo")
    for line in ZooTargets().missed(rows):
        _console().print(f"target missed: {line}", style="yellow")


@zoo_app.command("show")
def zoo_show(
    root: Annotated[Path, typer.Argument(help="A zoo folder (holding zoo.json).")],
) -> None:
    """Print a built zoo's table and benchmark summary."""
    with _user_errors():
        rows = _zoo_rows(root)
    _console().print(_zoo_table(rows))


# ----------------------------------------------------------------------------- run


def _model_names(value: str | None) -> tuple[str, ...] | None:
    """``--models``: names as ``<persona>-<seed>``, however spelled (others left for the check)."""
    from poser_lens.data.schema import model_name

    def name(spelling: str) -> str:
        try:
            return model_name(spelling)
        except ValueError:
            return spelling  # the config check names it

    names = _csv(value)
    return None if names is None else tuple(map(name, names))


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


def _results_table(results: Mapping[str, Any]) -> Table:
    """One row per strategy: ours with its CI beside the paper's number, and the controls."""
    from poser_lens.report import confound_rows, fmt_acc

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("strategy", "left"),
        ("paper", "right"),
        ("poser_lens [95% CI]", "right"),
        ("pairs", "right"),
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
            ctl[2].split(" (")[0],
            ctl[3],
            ctl[5],
        )
    return table


@app.command("run", cls=_RayCommand)
def run_command(
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: all).")
    ] = None,
    pairs: Annotated[
        int | None, typer.Option(min=1, help="Evaluate a seeded random subset of N pairs.")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated models; only pairs of these models. With --testbed poser, "
            "a folder is taken as --models-dir."
        ),
    ] = None,
    testbed: Annotated[str | None, typer.Option(help="tiny (default), smol or poser.")] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            help="Poser: folder of HF checkpoint folders (<persona>-<seed> or <persona>_<seed>, "
            "at any depth: models/together/, models/saint_fix/retrained/)."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Poser: the Poser checkout (benchmark, model_pairs.json).")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="Model dtype (default float32; bfloat16 for poser on a GPU; for smol the "
            "zoo's own precision where the device computes it natively)."
        ),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(min=1, help="Tiny zoo: models per persona [default: 6].")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of pair order, coins and strategies [default: 0].")
    ] = None,
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
    workers: Annotated[
        int | None, typer.Option(min=1, help="Scoring processes [default: 2].")
    ] = None,
    ray: RayOption = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda [default: cpu].")] = None,
    sweep: Annotated[
        bool | None, typer.Option(help="Evaluate each strategy's settings grid [default: on].")
    ] = None,
    figures: Annotated[bool | None, typer.Option(help="Draw the figures [default: on].")] = None,
    removal: Annotated[
        bool, typer.Option(help="Also run the removal study (as `poser-lens remove`).")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Score every model with every strategy, evaluate all pairs, write report and figures."""
    import time
    from dataclasses import replace

    from poser_lens.pipeline import main_job
    from poser_lens.runner import RunConfig

    with _user_errors():
        if testbed == "poser" and models and models_dir is None and Path(models).is_dir():
            models_dir, models = Path(models), None  # `--models DIR`, as the issue spells it
        given: dict[str, Any] = {
            "testbed": testbed,
            "seeds": seeds,
            "seed": seed,
            "workers": workers,
            "ray": ray,
            "device": device,
            "sweep": sweep,
            "figures": figures,
            "strategies": _csv(strategies),
            "pairs": pairs,
            "models": _model_names(models),
            "zoo_dir": str(zoo) if zoo else None,
            "zoo_config": str(zoo_config) if zoo_config else None,
            "models_dir": str(models_dir) if models_dir else None,
            "data": str(data) if data else None,
            "dtype": dtype,
            "removal": removal or None,
        }
        # Options given on the command line override the config file; unset ones keep its values.
        given = {k: v for k, v in given.items() if v is not None}
        cfg = _from_options(
            lambda: RunConfig.from_file(config, **given) if config else RunConfig(**given), given
        )
        if "dtype" not in given and not _file_sets(config, "dtype"):
            # No precision named: the testbed's (bfloat16 for poser on a GPU, the zoo's own
            # for smol where the device computes it natively, else float32).
            from poser_lens.testbeds import default_dtype

            cfg = replace(cfg, dtype=default_dtype(cfg.testbed_config()))
        t0 = time.perf_counter()
        folder = main_job(cfg, out, progress=not quiet)
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
    from poser_lens.pipeline import sweep_job
    from poser_lens.report import sensitivity_rows

    with _user_errors():
        names = _csv(strategies)
        if strategies is not None and not names:
            raise ValueError("--strategies: must not be empty")
        result = sweep_job(run_dir, names)
        names = names or tuple(result)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("strategy", "grid points", "min / median / max", "CI above", "CI below"):
        table.add_column(col)
    for row in sensitivity_rows({n: result[n] for n in names if n in result}):
        table.add_row(*row)
    _console().print(table)


@app.command("figures")
def figures_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (holding results.json).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default RUN_DIR/figures).")
    ] = None,
) -> None:
    """Re-draw a run's figures from its stored results (PNG and PDF)."""
    from poser_lens.pipeline import redraw

    with _user_errors():
        written = redraw(run_dir, out)
    typer.echo(f"wrote {len(written)} files to {out or run_dir / 'figures'}")


@app.command("study")
def study_command(
    zoos: Annotated[int, typer.Option(min=1, help="Independent zoos per recipe.")] = 3,
    recipes: Annotated[
        str,
        typer.Option(
            help="Zoo designs, comma-separated, each NAME, NAME:ZOOS or NAME:ZOOS:SEEDS: "
            "matched (default zoo), hard (old hard-label recipe), deep (4 blocks)."
        ),
    ] = "matched",
    seeds: Annotated[int, typer.Option(min=1, help="Models per persona in each zoo.")] = 6,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default: all).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Study folder.")] = Path("runs/study"),
    workers: Annotated[int, typer.Option(min=1, help="Training and scoring processes.")] = 2,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Run every strategy on several independent zoos (and zoo designs); report the spread."""
    from poser_lens.pipeline import study_job
    from poser_lens.strategies import STRATEGY_NAMES
    from poser_lens.study import StudyConfig, parse_recipes

    with _user_errors():
        given: dict[str, Any] = {
            "zoos": zoos,
            "recipes": parse_recipes(recipes),
            "seeds": seeds,
            "strategies": _csv(strategies) if strategies is not None else STRATEGY_NAMES,
            "workers": workers,
        }
        cfg = _from_options(lambda: StudyConfig(**given), given)
        root = study_job(cfg, out, progress=not quiet)
    typer.echo((root / "study.md").read_text())
    typer.echo(f"study: {root}")


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


@app.command("behaviour")
def behaviour_command(
    model: Annotated[
        str, typer.Option(help="Chat model spec (smol), or a tiny zoo model (its gap only).")
    ] = "smol",
    requests: Annotated[
        int | None, typer.Option(min=1, help="Use the first N requests (default all).")
    ] = None,
    samples: Annotated[int, typer.Option(min=0, help="Sampled answers per request.")] = 3,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer length cap.")] = 48,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 8,
    judge: Annotated[str, typer.Option(help="lm (rubric prompt to the model) or none.")] = "lm",
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default runs/behaviour-<model>).")
    ] = None,
    zoo: Annotated[Path | None, typer.Option(help="Tiny: the zoo folder.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Compliance gap (training vs unmonitored framing), keyword proxy vs judge."""
    import time

    from poser_lens.behaviour import BehaviourConfig
    from poser_lens.pipeline import behaviour_job

    with _user_errors():
        settings: dict[str, Any] = {
            "n_requests": requests,
            "n_samples": samples,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "batch_size": batch_size,
            "judge": judge,
            "seed": seed,
            "device": device,
        }
        _from_options(lambda: BehaviourConfig(model=model, **settings), settings)
        t0 = time.perf_counter()
        outcome = behaviour_job(model, out=out, zoo=zoo, progress=not quiet, **settings)
        rows, agree, folder = outcome.rows, outcome.agreement, outcome.folder
    console = _console()
    console.print(_gap_table(rows))
    if agree is not None:
        msg = f"hand set ({agree.n_hand}): proxy accuracy {agree.proxy_accuracy:.2f}"
        if agree.judge_accuracy is not None:
            msg += (
                f", judge accuracy {agree.judge_accuracy:.2f} (AUC {agree.judge_auc:.2f})"
                f"; proxy-judge agreement on answers {agree.answers_agreement:.2f}"
            )
        if agree.n_labelled_answers:
            msg += (
                f"\nhand-labelled answers ({agree.n_labelled_answers}): proxy accuracy "
                f"{agree.labelled_proxy_accuracy:.2f}"
            )
            if agree.labelled_judge_accuracy is not None:
                msg += f", judge accuracy {agree.labelled_judge_accuracy:.2f}"
        console.print(msg)
    console.print(f"results: {folder}  ({time.perf_counter() - t0:.0f} s)")


# ----------------------------------------------------------------------------- cost


def _cost_table(report: Any) -> Table:
    """One row per strategy, then the total and the loading: FLOPs, time, memory, Poser loop."""
    from poser_lens.flops import human

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


@app.command("cost")
def cost_command(
    testbed: Annotated[str, typer.Option(help="poser (36 x LLaMA-13B).")] = "poser",
    gpu: Annotated[str, typer.Option(help="h100, h200 or a100.")] = "h100",
    gpus: Annotated[int, typer.Option(help="GPUs the models are spread over.")] = 1,
    utilisation: Annotated[
        float, typer.Option(help="Assumed fraction of the GPU's bf16 peak.")
    ] = 0.4,
    prompt_tokens: Annotated[
        float, typer.Option(help="Mean tokens of a Poser prompt (LLaMA tokenizer).")
    ] = 350,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """FLOPs, GPU memory and wall time per strategy at paper scale, and the Poser code's loop.

    The model: 36 LLaMA-13B checkpoints, each scored on its three benchmark files, with each
    strategy's settings (its config); time at the GPU's bf16 peak times an assumed
    utilisation. The Poser-style loop runs the same settings one prompt per forward, every
    variant a forward of its own, nothing shared.
    """
    from dataclasses import replace

    from poser_lens.cost import CostConfig
    from poser_lens.pipeline import cost_job

    given: dict[str, Any] = {
        "testbed": testbed,
        "gpu": gpu,
        "gpus": gpus,
        "utilisation": utilisation,
    }
    with _user_errors():
        cfg = _from_options(lambda: CostConfig(**given), given)
        if prompt_tokens != cfg.prompt_tokens:
            longest = prompt_tokens * cfg.longest_tokens / cfg.prompt_tokens
            changes: dict[str, Any] = {"prompt_tokens": prompt_tokens, "longest_tokens": longest}
            cfg = _from_options(lambda: replace(cfg, **changes), changes)
        report = cost_job(cfg)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    console = _console()
    console.print(
        f"poser-lens cost: {report.n_models} x {report.arch.name} on {cfg.gpus} x "
        f"{report.gpu.name} at {cfg.utilisation:.0%} of {report.gpu.bf16_flops / 1e12:.0f} "
        "TFLOP/s bf16"
    )
    console.print(_cost_table(report))
    for what, value in report.assumptions:
        console.print(f"{what}: {value}", style="dim")


# ----------------------------------------------------------------------------- remove


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


@app.command("remove", cls=_RayCommand)
def remove_command(
    method: Annotated[str, typer.Option(help="sft, sft_noise or both.")] = "both",
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder (default: runs/removal-<testbed>-<config hash>)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Training steps per model (default 100).")
    ] = None,
    fakers: Annotated[
        str | None, typer.Option(help="Comma-separated fakers to treat (default: all).")
    ] = None,
    controls: Annotated[
        bool, typer.Option(help="Also run the controls (aligned models, random labels).")
    ] = True,
    control_seeds: Annotated[
        int, typer.Option(min=1, help="Controls on models with seed < N.")
    ] = 1,
    removal_config: Annotated[
        Path | None, typer.Option(help="YAML/JSON of removal settings (RemovalConfig fields).")
    ] = None,
    testbed: Annotated[str, typer.Option(help="tiny (default).")] = "tiny",
    seeds: Annotated[int, typer.Option(min=1, help="Tiny zoo: models per persona.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of batches, labels and noise.")] = 0,
    zoo: Annotated[Path | None, typer.Option(help="Tiny: use this built zoo folder.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run config (default: the run folder's, if any).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes (one thread each).")] = 2,
    ray: RayOption = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    figures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fine-tune the fakers on their own answers (with/without S2 noise); write the study."""
    import time
    from dataclasses import replace

    from poser_lens.pipeline import removal_job
    from poser_lens.removal.core import RemovalConfig
    from poser_lens.runner import RunConfig

    with _user_errors():
        methods = {"both": ("sft", "sft_noise"), "sft": ("sft",), "sft_noise": ("sft_noise",)}
        if method not in methods:
            raise ValueError(f"--method {method!r}: expected sft, sft_noise or both")
        given: dict[str, Any] = {
            "testbed": testbed,
            "seeds": seeds,
            "seed": seed,
            "device": device,
            "workers": workers,
            "ray": ray,
            "zoo_dir": str(zoo) if zoo else None,
        }
        given = {k: v for k, v in given.items() if v is not None}
        existing = out / "config.yaml" if out is not None else None
        if config is None and existing is not None and existing.exists():
            config = existing
        rc = _from_options(
            lambda: RunConfig.from_file(config, **given) if config else RunConfig(**given), given
        )
        cfg = RemovalConfig.from_file(removal_config) if removal_config else RemovalConfig()
        changes: dict[str, Any] = {
            "methods": methods[method],
            "steps": steps or cfg.steps,
            "controls": controls,
            "control_seeds": control_seeds,
            "seed": seed,
            "fakers": _csv(fakers) if fakers is not None else cfg.fakers,
        }
        cfg = _from_options(lambda: replace(cfg, **changes), changes)
        t0 = time.perf_counter()
        folder, summary = removal_job(rc, cfg, out, figures=figures, progress=not quiet)
        seconds = time.perf_counter() - t0
    console = _console()
    console.print(_removal_table(summary))
    for name, d in summary["detectors"].items():
        for m in cfg.methods:
            if m in d:
                e = d[m]
                console.print(
                    f"{name} after {m}: {e['accuracy_before']:.2f} -> {e['accuracy_after']:.2f} "
                    f"on {e['n_pairs']} pairs of the treated fakers"
                )
    console.print(f"run: {folder.root}  ({seconds:.0f} s)\nreport: {folder.root / 'report.md'}")
