r"""The ``poser-lens`` command line.

Thin by design: each command parses its arguments, calls the library and prints. Only the
light data layer is imported at the top; heavy modules (torch, TransformerLens) are imported
inside the commands that need them, so ``poser-lens data ...`` and ``poser-lens --help`` start
fast and never load torch.

Every error is printed as one line, ``error: <message>``, on stderr, with exit code 1 and no
traceback: errors the user can fix (a missing folder, a broken record, a bad setting) with
their message, which names the file, record or option; any other error with its type and a
hint. ``poser-lens --debug ...`` (or ``POSER_LENS_DEBUG=1``) shows the traceback instead.

The package, one module per command group:

- ``_app``: the Typer app, its ``--version``/``--debug`` callback and the one-line errors;
- :mod:`~poser_lens.cli.options`: options shared by commands (``--ray``) and settings checked
  as their command-line option;
- :mod:`~poser_lens.cli.tables`: the rich tables the commands print;
- :mod:`~poser_lens.cli.data` (``data ...``), :mod:`~poser_lens.cli.zoo` (``zoo ...``, with
  ``zoo.json``'s check), :mod:`~poser_lens.cli.run` (``run``, ``sweep``, ``figures``),
  :mod:`~poser_lens.cli.study`, :mod:`~poser_lens.cli.behaviour`, :mod:`~poser_lens.cli.cost`
  and :mod:`~poser_lens.cli.remove`: the commands.

The top-level commands are registered here, in the order ``poser-lens --help`` lists them.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output
    'poser-lens 0.1.0\n'
"""

from __future__ import annotations

from poser_lens.cli import behaviour, cost, data, remove, run, study, zoo
from poser_lens.cli._app import app, main
from poser_lens.cli.options import _RayCommand

__all__ = ["app", "main"]

app.command("run", cls=_RayCommand)(run.run_command)
app.command("sweep")(run.sweep_command)
app.command("figures")(run.figures_command)
app.command("study")(study.study_command)
app.command("behaviour")(behaviour.behaviour_command)
app.command("cost")(cost.cost_command)
app.command("remove", cls=_RayCommand)(remove.remove_command)
app.add_typer(data.data_app, name="data")
app.add_typer(zoo.zoo_app, name="zoo")
