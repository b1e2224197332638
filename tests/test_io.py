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
