"""``poser-lens cost``: FLOPs, GPU memory and wall time per strategy at paper scale.

The command is registered on the app by :mod:`poser_lens.cli`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from poser_lens.cli._app import _user_errors
from poser_lens.cli.options import _from_options
from poser_lens.cli.tables import _console, _cost_table


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
