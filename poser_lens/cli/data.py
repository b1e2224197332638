"""``poser-lens data ...``: read, check, generate and de-confound Poser-format data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.tables import _LEGEND, _PARTS, _confound_tables, _console, _part_table
from poser_lens.data.poser import inspect_root, summarize_files

data_app = typer.Typer(help="Read and check Poser-format data.", no_args_is_help=True)


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
