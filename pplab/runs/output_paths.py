"""Where pplab writes: checked before the work, and the leftovers of dead writers swept away.

What it teaches: an output that cannot be written should fail in the first second, not after
twenty minutes of training. ``check_writable`` finds the folder a file or run directory will
land in (its nearest existing ancestor: missing folders are created on saving), and writes
and removes a small probe file there, so a path under a regular file, a read-only folder or
mount and a full disk are each one line before anything starts.

Everything pplab saves is first written under a hidden temporary name and renamed into place
(``pplab.runs.atomic_files``); a writer killed outright (SIGKILL, power loss) leaves that temporary
behind. Its name carries the writer's process id (``temp_prefix``), so the next save into the
same folder can tell a dead writer's leftover from a live one's work and remove it
(``sweep_stale_temps``). Process ids are this machine's: a folder shared by several machines
is swept only of names no live process here holds.

    python -c "from pplab.runs.output_paths import check_writable; check_writable('runs/x', \
    '--out')"
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

PROBE_BYTES = 64 * 2**10
_TEMP_NAME = re.compile(r"\..+\.([0-9]+)-[A-Za-z0-9_]+\.tmp")


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists on this machine and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:
        return False
    try:  # an exited process nobody has reaped yet holds only its number
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def temp_prefix(name: str) -> str:
    """The start of a temporary name for ``name``: hidden, with this process's id."""
    return f".{name}.{os.getpid()}-"


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (``temp_prefix`` + random + ``.tmp``) of writers that are dead.

    Returns what was removed. Anything else in ``folder``, and every temporary of a live
    process, is left alone; a folder that cannot be listed is left as it is.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or pid_alive(int(match[1])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # another sweeper got there first, or it is not ours to remove
        removed.append(path)
    return removed


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def check_writable(target: str | os.PathLike, flag: str, need_bytes: int = 0,
                   folder: bool = False) -> Path:
    """Refuse, with one line naming ``flag``, a ``target`` that cannot be written.

    ``target`` is the file (or, with ``folder``, the directory) about to be created; the
    folder it would land in must be a folder, accept a new file and hold ``need_bytes`` more
    (an estimate; the probe itself writes ``PROBE_BYTES``). Returns that folder. Raises
    ValueError. A directory that already exists is for the caller to refuse.
    """
    target = Path(target)
    if not folder and target.is_dir():
        raise ValueError(f"{flag} {target}: is a folder; give a file name")
    base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise ValueError(f"{flag} {target}: {base} is a file, not a folder")
    free = _free_bytes(base)
    if free is not None and need_bytes > free:
        raise ValueError(f"{flag} {target}: {base} has {free / 2**20:,.1f} MiB free; "
                         f"the output needs about {need_bytes / 2**20:,.1f} MiB")
    probe = None
    try:
        descriptor, probe = tempfile.mkstemp(dir=base, prefix=temp_prefix("pplab-probe"),
                                             suffix=".tmp")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.ENOSPC:
            reason = "no space left on the device"
        raise ValueError(f"{flag} {target}: cannot write in {base}: {reason}") from None
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    return base


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None
