"""Small file helpers: atomic writes and JSON reads with one-line errors.

Every file poser_lens writes goes through :func:`write_text_atomic` (a temporary file in the
same folder, then :func:`os.replace`), and every folder of model files through
:func:`atomic_dir`, so an interrupted run never leaves a half-written file or folder.

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
import shutil
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """A folder that appears complete or not at all.

    Yields an empty temporary folder beside ``final`` to fill; when the block ends without an
    error, the folder (made readable like a plain one: ``mkdtemp`` creates it private) becomes
    ``final`` in one rename. If ``final`` already exists it is kept and the new folder dropped
    (another process finished first), unless ``overwrite``. On an error nothing is left behind.

    Args:
        final: The folder to create.
        overwrite: Replace an existing ``final`` instead of keeping it.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "model"
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "w.txt").write_text("1")
        >>> (out / "w.txt").read_text(), oct(out.stat().st_mode & 0o777)
        ('1', '0o755')
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "w.txt").write_text("2")
        >>> (out / "w.txt").read_text(), len(list(out.parent.iterdir()))
        ('1', 1)
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            if f.is_file():
                f.chmod(0o644)
        if target.exists():
            if not overwrite:
                return
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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


def default_cache_dir() -> Path:
    """Where zoos and converted models are cached: ``$POSER_LENS_CACHE`` or the user cache dir."""
    env = os.environ.get("POSER_LENS_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("poser_lens"))
