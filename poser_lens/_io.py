"""Small file helpers: atomic writes and JSON reads with one-line errors.

Every file poser_lens writes goes through :func:`write_text_atomic` (a temporary file in the
same folder, then :func:`os.replace`), so an interrupted run never leaves a half-written file.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.json"
    >>> write_json_atomic(p, {"x": 1})
    >>> read_json(p)
    {'x': 1}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    r"""Write text to a file atomically, creating missing parent folders.

    The text goes to a temporary file in the target's folder, which then replaces the
    target in one step: readers see the old content or the new, never a partial file.

    Args:
        path: The file to write.
        text: Its new content (written as UTF-8).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
        >>> write_text_atomic(p, "hello\n")
        >>> p.read_text()
        'hello\n'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    r"""Write an object as JSON atomically (see :func:`write_text_atomic`).

    Args:
        path: The file to write.
        obj: Any JSON-serialisable object.
        indent: Indentation passed to :func:`json.dumps` (None for one line).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
        >>> write_json_atomic(p, [1, 2], indent=None)
        >>> p.read_text()
        '[1, 2]\n'
    """
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file.

    Args:
        path: The file to read.

    Returns:
        The decoded object.

    Raises:
        ValueError: One line naming the file, if it is not valid JSON (or not UTF-8).
        OSError: If the file cannot be read.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.json"
        >>> _ = p.write_text("[1,")
        >>> try:
        ...     read_json(p)
        ... except ValueError as err:
        ...     print(str(err).split(": ", 1)[1])
        invalid JSON at line 1 column 4: Expecting value
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
