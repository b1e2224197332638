"""``poser-lens behaviour``: the compliance gap, keyword proxy against judge.

The command is registered on the app by :mod:`poser_lens.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.options import _from_options
from poser_lens.cli.tables import _console, _gap_table


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
