"""Writing files and directories so that a reader sees all of them or none.

Everything pplab saves (schedules, traces, run directories, comparisons) is first written
beside its final name under a hidden temporary name, then renamed into place: a rename within
one directory is atomic, so a crash or Ctrl-C never leaves half a file for the lab to trip on.

    python -c "from pplab.atomic_files import write_text_atomic; write_text_atomic('x.txt', 'hi')"
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary directory beside ``directory``; rename it into place when the
    block succeeds, delete it when the block fails. Never replaces an existing directory."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        yield tmp
        try:
            os.rename(tmp, directory)
        except OSError:
            raise ValueError(f"{directory} appeared while writing; not overwriting it") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
