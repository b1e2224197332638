"""The Typer app of ``poser-lens``: its callback (``--version``, ``--debug``) and one-line errors.

The commands are registered on :data:`app` by :mod:`poser_lens.cli`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from poser_lens import __version__

try:  # typer vendors its own click (0.2x); older typers use click's exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

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
