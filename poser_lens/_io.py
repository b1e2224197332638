"""Small file helpers: atomic writes and JSON reads with one-line errors.

Every file poser_lens writes goes through :func:`write_text_atomic` (a temporary file in the
same folder, then :func:`os.replace`), and every folder of model files through
:func:`atomic_dir`, so an interrupted run never leaves a half-written file or folder. Both
honour the umask (a shared cache or run folder is as readable as any file the user makes),
and a file that already holds the text is not rewritten (a complete read-only cache is
usable). :func:`removed_on_error` drops a folder a failed job made before it held any work,
:func:`check_writable` checks an output folder before the work starts, and
:func:`fingerprint` hashes a tree of files. :func:`step_lock` and :func:`building` let
several processes build one folder together (OS file locks, :mod:`filelock`), each step done
once.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.json"
    >>> write_json_atomic(p, {"x": 1})
    >>> read_json(p)
    {'x': 1}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: The folder of a build folder's locks (``<folder>/.locks``): not part of what is built
#: (never hashed, copied or read as output).
LOCKS = ".locks"


def _create(parent: Path, name: str, make: Callable[[Path], T]) -> tuple[Path, T]:
    """A new file or folder ``.<name>.<random>.tmp`` in ``parent``, made by ``make(path)``.

    ``make`` creates it with the permissions the umask leaves (unlike ``mkstemp`` and
    ``mkdtemp``, which make it private whatever the umask), failing if the name is taken.
    """
    for _ in range(100):
        path = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return path, make(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free temporary name for {name}")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    r"""Write text to a file atomically, creating missing parent folders.

    The text goes to a temporary file in the target's folder, which then replaces the
    target in one step: readers see the old content or the new, never a partial file. A
    target that already holds this text is left alone (so a complete read-only cache is
    usable), and a new file gets the permissions the umask leaves, as ``open`` would give.

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
    data = text.encode("utf-8")
    with contextlib.suppress(OSError):
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            return
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp, fd = _create(target.parent, target.name, lambda p: os.open(p, flags, 0o666))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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

    Yields an empty temporary folder beside ``final`` to fill (with the permissions the umask
    leaves, like a folder made by ``mkdir``); when the block ends without an error, it
    becomes ``final`` in one rename. If ``final`` already exists it is kept and the new
    folder dropped (another process finished first), unless ``overwrite``. On an error
    nothing is left behind.

    Args:
        final: The folder to create.
        overwrite: Replace an existing ``final`` instead of keeping it.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "model"
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "w.txt").write_text("1")
        >>> (out / "w.txt").read_text(), out.stat().st_mode & 0o777 == 0o777 & ~umask()
        ('1', True)
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "w.txt").write_text("2")
        >>> (out / "w.txt").read_text(), len(list(out.parent.iterdir()))
        ('1', 1)
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, _ = _create(target.parent, target.name, lambda p: p.mkdir(0o777))
    try:
        yield tmp
        if target.exists():
            if not overwrite:
                return
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def umask() -> int:
    """The process's umask (read without changing it where ``/proc`` tells it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def removed_on_error(
    folder: str | os.PathLike[str], keep: Callable[[Path], bool] = lambda p: False
) -> Iterator[None]:
    """Remove ``folder`` if the block fails, when the block created it and it holds no work.

    A job that fails before it has anything worth resuming (a bad setting, a missing input)
    leaves nothing behind; ``keep(folder)`` says whether it holds such work (stored scores,
    trained models), which an interrupted job resumes from. Nor is a folder that another
    process is building (:func:`others_building`) removed.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> try:
        ...     with removed_on_error(out):
        ...         _ = out.mkdir(), (out / "config.yaml").write_text("x")
        ...         raise RuntimeError("boom")
        ... except RuntimeError:
        ...     pass
        >>> out.exists()
        False
    """
    path = Path(folder)
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed and path.is_dir() and not keep(path) and not others_building(path):
            shutil.rmtree(path, ignore_errors=True)
        raise


@contextlib.contextmanager
def step_lock(folder: str | os.PathLike[str], step: str) -> Iterator[None]:
    """Hold the lock of one build step of ``folder`` for the block (``.locks/<step>.lock``).

    Several processes building one folder (two runs sharing a cache) each take a step's lock
    before doing it, and inside it check again whether the step's output is there: the
    second waits for the first, then finds its output and reuses it, so every step is done
    once. The locks are the operating system's (:class:`filelock.FileLock`, ``flock`` on
    POSIX), released when the process holding one ends however it ends, so a killed build
    never blocks another; on a filesystem without them (some network filesystems) filelock
    falls back to lock files that a killed process leaves behind (delete ``.locks`` then).

    Args:
        folder: The folder being built (created if missing).
        step: The step's name (a file name).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with step_lock(root, "base"):
        ...     sorted(p.name for p in (root / LOCKS).iterdir())
        ['base.lock']
    """
    path = Path(folder) / LOCKS / f"{step}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("%s: another process is doing %s; waiting for it", folder, step)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def building(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Say, for the block, that this process is building ``folder``.

    A lock of its own (``.locks/build-<random>.lock``), held for the block: while it is held,
    another process's failed build of the same folder does not remove it
    (:func:`removed_on_error`, :func:`others_building`).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with building(root):
        ...     others_building(root)
        False
    """
    path = Path(folder) / LOCKS / f"build-{secrets.token_hex(8)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    lock.acquire(timeout=0)  # a name of its own: nobody else takes it
    _OWN_BUILDS.add(path.resolve())
    try:
        yield
    finally:
        _OWN_BUILDS.discard(path.resolve())
        path.unlink(missing_ok=True)
        lock.release()


#: The build locks this process holds (:func:`building`).
_OWN_BUILDS: set[Path] = set()


def others_building(folder: str | os.PathLike[str]) -> bool:
    """Whether another live process is building ``folder`` (:func:`building`).

    The lock files of builds that ended without removing theirs (a killed process) are
    dropped on the way.

    Example:
        >>> import tempfile
        >>> others_building(tempfile.mkdtemp())
        False
    """
    for path in sorted((Path(folder) / LOCKS).glob("build-*.lock")):
        if path.resolve() in _OWN_BUILDS:
            continue
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()
    return False


def check_writable(folder: str | os.PathLike[str], what: str = "folder") -> None:
    """Fail now, in one line, if ``folder`` cannot be created or written to.

    The folder need not exist: its nearest existing parent must then be a writable folder.

    Raises:
        ValueError: Naming the folder (``what`` says what it is for).

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "file"
        >>> _ = f.write_text("x")
        >>> check_writable(f / "run", "run folder")
        Traceback (most recent call last):
        ...
        ValueError: run folder .../file/run: .../file is a file, not a folder
    """
    path = Path(folder)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        place = "" if probe == path else f" ({probe} is read-only)"
        raise ValueError(f"{what} {path}: cannot write there{place}")


def fingerprint(root: str | os.PathLike[str], patterns: Sequence[str] = ("**/*",)) -> str:
    """A short content hash of the files under ``root`` matching ``patterns``.

    Each file's path (relative to ``root``) and bytes go in, in sorted path order, so the
    same files give the same hash wherever they lie.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "a.txt").write_text("1")
        >>> fingerprint(root) == fingerprint(root, ["*.txt"]) != fingerprint(root, ["*.bin"])
        True
    """
    base = Path(root)
    files = sorted({p for pat in patterns for p in base.glob(pat) if p.is_file()})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(base).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


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
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None


def default_cache_dir() -> Path:
    """Where zoos and converted models are cached: ``$POSER_LENS_CACHE`` or the user cache dir."""
    env = os.environ.get("POSER_LENS_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("poser_lens"))
