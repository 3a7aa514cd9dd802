"""The rendezvous folder of a local run: where its ranks meet and find their work.

What it teaches: processes that start together need one place they all know. Each run gets
a fresh folder, so two runs never collide on a port: torch.distributed's file store lives in
it, and so do the arguments of the ranks' work, pickled once. Every folder sits under one
well-known parent, ``$TMPDIR/pplab-rdv-<uid>/<pid>-<random>``, named for the process that
owns it. The owner
removes its folder when the run ends, however it ends (an error, Ctrl-C, SIGTERM); a process
killed outright cannot, so every new run first sweeps the folders whose owner is dead.

    python -c "from pplab.engine.rendezvous import new_folder; print(new_folder())"
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import tempfile
from pathlib import Path

from pplab.runs.output_paths import pid_alive

STORE_FILE = "store"
ARGS_FILE = "args.pickle"


def root() -> Path:
    """The parent of every rendezvous folder of this user on this machine."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"pplab-rdv-{uid}"


def _own_root() -> Path:
    """``root()``, created private; refused when someone else made it (a shared /tmp)."""
    parent = root()
    parent.mkdir(mode=0o700, exist_ok=True)
    info = parent.lstat()
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise OSError(f"{parent} is not a folder of this user; remove it")
    return parent


def owner_of(folder: Path) -> int | None:
    """The process id a rendezvous folder is named for, or None for a name not ours."""
    head = folder.name.split("-", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def sweep() -> list[Path]:
    """Remove the rendezvous folders whose owning process is dead; return them."""
    removed = []
    try:
        folders = list(root().iterdir())
    except OSError:
        return removed
    for folder in folders:
        pid = owner_of(folder)
        if pid is None or pid_alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def new_folder() -> Path:
    """A fresh, private rendezvous folder for this process (after sweeping dead ones)."""
    sweep()
    return Path(tempfile.mkdtemp(dir=_own_root(), prefix=f"{os.getpid()}-"))


def init_method(folder: Path) -> str:
    """torch.distributed's address of the folder's file store."""
    return f"file://{folder / STORE_FILE}"


def write_args(folder: Path, args: tuple) -> None:
    """The arguments every rank's work gets, pickled once for all ranks."""
    (folder / ARGS_FILE).write_bytes(pickle.dumps(args))


def read_args(folder: Path) -> tuple:
    return pickle.loads((folder / ARGS_FILE).read_bytes())
