"""Writing files and directories so that a reader sees all of them or none.

Everything pplab saves (schedules, traces, run directories, comparisons) is first written
beside its final name under a hidden temporary name, then renamed into place: a rename within
one directory is atomic, so a crash or Ctrl-C never leaves half a file for the lab to trip on.
A writer killed outright (SIGKILL) still leaves its hidden temporary; its name carries the
writer's process id (``pplab.runs.output_paths.temp_prefix``), and the next write into the same
folder removes the temporaries of dead writers (``sweep_stale_temps``).
What lands gets the permissions the user's umask gives a new file or folder, as if it had been
written in place (temporary files are created private, 0600 and 0700).

    python -c "from pplab.runs.atomic_files import write_text_atomic; write_text_atomic('x.txt', \
    'hi')"
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pplab.runs.output_paths import sweep_stale_temps, temp_prefix


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it and put it back
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_RENAME_NOREPLACE = 1  # linux/fs.h


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, failing with FileExistsError if ``target`` exists.

    A plain rename(2) silently replaces an empty directory. Linux's renameat2 can refuse in
    the same atomic step; elsewhere the check just before the rename leaves a short window.
    """
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) \
        if libc_name else None
    if renameat2 is not None:
        at_cwd = -100  # AT_FDCWD
        if renameat2(at_cwd, os.fsencode(source), at_cwd, os.fsencode(target),
                     _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(target))
        if code not in (errno.ENOSYS, errno.EINVAL):  # unsupported: fall back below
            raise OSError(code, os.strerror(code), str(target))
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary directory beside ``directory``; rename it into place when the
    block succeeds, delete it when the block fails. Never replaces anything already at
    ``directory``, not even an empty directory."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(directory.parent)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=temp_prefix(directory.name),
                                suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        try:
            _rename_no_replace(tmp, directory)
        except FileExistsError:
            raise ValueError(f"{directory} appeared while writing; not overwriting it") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
