"""Atomic writes: complete or absent, never over something already there, with the umask's modes."""

from __future__ import annotations

import os
import stat

import pytest

from pplab.runs.atomic_files import atomic_directory, current_umask, write_text_atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_files_and_folders_get_the_users_umask_not_private_modes(tmp_path, umask_027):
    assert current_umask() == umask_027
    path = write_text_atomic(tmp_path / "a.csv", "0F0\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with atomic_directory(tmp_path / "run") as tmp:
        (tmp / "meta.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "run" / "meta.json").stat().st_mode) == 0o640


@pytest.mark.parametrize("already", ["empty folder", "full folder", "file"])
def test_never_replaces_what_is_already_there(tmp_path, already):
    target = tmp_path / "run"
    if already == "file":
        target.write_text("mine")
    else:
        target.mkdir()
        if already == "full folder":
            (target / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="appeared while writing"):
        with atomic_directory(target) as tmp:
            (tmp / "meta.json").write_text("{}")
    assert not (target / "meta.json").exists() if target.is_dir() else target.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no hidden temp folder left


def test_a_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "run") as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_is_swept_by_the_next_write(tmp_path):
    import signal
    import subprocess
    import sys

    code = ("import os, signal, sys; from pathlib import Path; "
            "from pplab.runs.atomic_files import atomic_directory\n"
            "with atomic_directory(sys.argv[1]) as tmp:\n"
            "    (tmp / 'half').write_text('x'); os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")])
    assert done.returncode == -signal.SIGKILL
    assert len(list(tmp_path.iterdir())) == 1  # its hidden temporary, left behind
    with atomic_directory(tmp_path / "other") as tmp:
        (tmp / "meta.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["other"]
