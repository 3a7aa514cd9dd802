"""`pplab lab` owns its server: a signal to it stops Streamlit and everything the lab started.

The command does not become the server; it starts Streamlit as its child and stays to watch
it. SIGTERM (a service manager), SIGINT (Ctrl-C) or SIGHUP (the terminal closed) reach this
parent, which asks the server to stop (SIGTERM), waits ``LAB_STOP_GRACE_S`` and then kills it.
What the server started in sessions of their own (a live training run and its ranks, the
coding lab's grader, the work pool's processes) would outlive it as orphans: on Linux this
parent is their *subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so every orphan of the
server becomes its child, and it stops them too before it exits. The server is also told to
stop should this parent die without a word (``PR_SET_PDEATHSIG``). The port is free once
the server is gone.

    pplab lab --port 8502        # then: kill -TERM <its pid>; the port is free in seconds
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pplab.limits import LAB_STOP_GRACE_S

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stop(Exception):
    """Raised by the signal handler to leave the wait on the server."""


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def children() -> list[int]:
    """This process's child processes (Linux /proc; empty elsewhere)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(me):
            found.append(int(entry.name))
    return found


def _signal_tree(pid: int, sig: int) -> None:
    """``sig`` to ``pid`` and its process group, unless that group is this process's own."""
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, sig)
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(deadline: float) -> list[int]:
    """Reap exited children until none is left or ``deadline``; the ones still running."""
    while True:
        for pid in children():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        left = children()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def stop_everything(server: subprocess.Popen, grace: float = LAB_STOP_GRACE_S) -> None:
    """Stop the server (SIGTERM, then SIGKILL after ``grace``), then every orphan it left."""
    if server.poll() is None:
        _signal_tree(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_tree(server.pid, signal.SIGKILL)
            server.wait()
    _signal_tree(server.pid, signal.SIGKILL)  # anything left in the server's own group
    # Orphans arrive as they are re-parented; a run's ranks arrive once their parent dies.
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
        left = _reap(time.monotonic() + 0.2)
        if not left:
            return
        for pid in left:
            _signal_tree(pid, sig)
        _reap(time.monotonic() + (grace if sig == signal.SIGTERM else 1.0))


def serve(command: list[str], env: dict[str, str]) -> int:
    """Run the server ``command`` until it exits or this process is told to stop."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    # Its own session: the terminal's Ctrl-C reaches this parent only, which then stops the
    # server in order (instead of both racing to handle it).
    server = subprocess.Popen(command, env=env, start_new_session=True,
                              preexec_fn=_die_with_parent)
    received: list[int] = []

    def on_signal(number, _frame):
        received.append(number)
        if len(received) == 1:
            raise _Stop

    for number in STOP_SIGNALS:
        signal.signal(number, on_signal)
    try:
        code = server.wait()
    except _Stop:
        code = 0
    try:
        stop_everything(server)
    finally:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
    if received:
        print(f"pplab lab: stopped ({signal.Signals(received[0]).name}): the server and "
              f"everything it started have ended", file=sys.stderr, flush=True)
    return code
