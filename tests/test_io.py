"""Tests of the atomic file and folder helpers."""

import pytest

from poser_lens._io import atomic_dir


def test_atomic_dir_error_leaves_nothing(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "w.bin").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_or_overwrites_an_existing_folder(tmp_path):
    out = tmp_path / "model"
    for text, overwrite in (("first", False), ("second", False), ("third", True)):
        with atomic_dir(out, overwrite=overwrite) as tmp:
            (tmp / "w.txt").write_text(text)
        expected = "third" if overwrite else "first"
        assert (out / "w.txt").read_text() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# --- shared files, read-only caches, failed jobs (issue 18) -----------------------------------

import os  # noqa: E402

from poser_lens._io import (  # noqa: E402
    check_writable,
    fingerprint,
    read_json,
    removed_on_error,
    write_json_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask():
    """Set the process umask for a test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(
    ("mask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
)
def test_written_files_and_folders_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    """A shared cache or run folder is as readable as the user's umask makes any file."""
    umask(mask)
    write_text_atomic(tmp_path / "a" / "f.txt", "x")
    assert (tmp_path / "a" / "f.txt").stat().st_mode & 0o777 == file_mode
    with atomic_dir(tmp_path / "model") as tmp:
        write_json_atomic(tmp / "w.json", [1])
    assert (tmp_path / "model").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "model" / "w.json").stat().st_mode & 0o777 == file_mode


def test_unchanged_files_are_not_rewritten(tmp_path):
    """A complete cache is read, never written: the same text keeps the file (and its inode)."""
    path = tmp_path / "zoo.json"
    write_json_atomic(path, {"a": 1})
    before = path.stat()
    write_json_atomic(path, {"a": 1})
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    write_json_atomic(path, {"a": 2})
    assert read_json(path) == {"a": 2} and path.stat().st_ino != before.st_ino
    assert [p.name for p in tmp_path.iterdir()] == ["zoo.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unchanged_files_in_a_read_only_folder_are_fine(tmp_path):
    path = tmp_path / "ro" / "zoo.json"
    write_json_atomic(path, {"a": 1})
    path.parent.chmod(0o555)
    try:
        write_json_atomic(path, {"a": 1})
        with pytest.raises(PermissionError):
            write_json_atomic(path, {"a": 2})
        with pytest.raises(ValueError, match="cannot write there"):
            check_writable(path.parent / "run", "run folder")
    finally:
        path.parent.chmod(0o755)


def test_deeply_nested_json_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.json: JSON nested too deeply"):
        read_json(path)


def test_removed_on_error_keeps_what_holds_work(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), removed_on_error(out, keep=lambda p: (p / "s").exists()):
        out.mkdir()
        (out / "config.yaml").write_text("x")
        raise RuntimeError("failed before any work")
    assert not out.exists()
    with pytest.raises(RuntimeError), removed_on_error(out, keep=lambda p: (p / "s").exists()):
        (out / "s").mkdir(parents=True)
        raise RuntimeError("interrupted after some work")
    assert (out / "s").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError), removed_on_error(tmp_path / "mine"):
        raise RuntimeError("a folder that existed before is never removed")
    assert (tmp_path / "mine").exists()


def test_check_writable_names_the_folder(tmp_path):
    check_writable(tmp_path / "new" / "deeper", "run folder")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"run folder .*f/run: .*f is a file, not a folder"):
        check_writable(tmp_path / "f" / "run", "run folder")
    with pytest.raises(ValueError, match="is a file"):
        check_writable(tmp_path / "f", "run folder")
    assert not (tmp_path / "new").exists()


def test_fingerprint_depends_on_content_and_names_not_place(tmp_path):
    for root in ("a", "b"):
        write_text_atomic(tmp_path / root / "m" / "w.bin", "1")
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b")
    write_text_atomic(tmp_path / "b" / "m" / "w.bin", "2")
    assert fingerprint(tmp_path / "a") != fingerprint(tmp_path / "b")
