"""Options shared by commands, and settings checked as the command-line option that set them.

``--ray [ADDRESS]`` (:data:`RayOption`, with a command class that lets it go without its
value), a config built from the options with a bad setting named as its option, and the
comma-separated lists of ``--strategies``, ``--personas`` and the like.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from poser_lens._pool import RAY_LOCAL

T = TypeVar("T")


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


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None
