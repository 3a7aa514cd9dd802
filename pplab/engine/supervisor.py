"""Starting one process per rank, and ending every one of them, whatever happened.

What it teaches: a pipeline is many processes that must start together and fail together.
``spawn_ranks`` starts ``world_size`` fresh Python processes ("spawn", never fork: torch
does not survive a fork), lets them meet through a file store in a fresh rendezvous folder
(``rendezvous``: two runs never collide on a port) and runs ``fn(rank, world_size, report,
*args)`` in each, one CPU thread per rank.

While they run, the parent watches them without ever waiting unbounded
(``rank_watch.RankWatch``: pipes read a tenth of a second at a time, heartbeats, exit codes,
the root cause named rather than its echoes). The first failure ends the run at once: the
other ranks are terminated (then killed, after a grace period), the rendezvous folder is
removed, and the caller gets ``RankFailed`` naming the rank that failed first, as "rank 2
failed: killed by signal 9". A rank that delivered its result is ended too: tearing torch
down takes seconds and there is nothing left for it to do.

The engine (``pplab train``), the benchmarks and the multi-process tests all start their
ranks here.

    python -c "from pplab.engine.supervisor import spawn_ranks, demo_rank;
    print(spawn_ranks(2, demo_rank, backend=None))"
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from pplab.engine import rendezvous
from pplab.engine.rank_channel import Inbox, describe_error, rank_main
from pplab.engine.rank_watch import OnReport, RankFailed, RankWatch

GRACE_SECONDS = 5.0  # a terminated rank gets this long before it is killed outright

# fn(rank, world_size, report, *args); report(event, **fields) tells the parent something.
Report = Callable[..., None]


class Stopped(Exception):
    """SIGTERM arrived (the app's Stop button, a job scheduler): unwind and clean up."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn the first SIGTERM into ``Stopped``, so the ranks are stopped and nothing is left
    behind; a second one, during that cleanup, is ignored. Outside the main thread (where
    Python cannot catch signals) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def spawn_ranks(world_size: int, fn: Callable, *args, backend: str | None = "gloo",
                timeout: float = 300.0, on_report: OnReport | None = None) -> list:
    """Run ``fn(rank, world_size, report, *args)`` on ``world_size`` new processes.

    Returns the results in rank order. ``fn`` must be importable by name (a module-level
    function), as spawn requires; its result is pickled, so tensors travel safely.
    ``backend`` is the torch.distributed backend each rank joins before ``fn`` runs (None:
    no process group, no torch). ``timeout`` bounds both the process group's own waits and
    the parent's patience: the run fails when no rank reports for that long.
    ``on_report(rank, event, fields)`` sees, in the parent, every ``report`` of every rank,
    and the supervisor's own: "started" (the rank's Python, and torch, are loaded;
    ``fields["pid"]`` is its process id), "joined" (its process group is up; ``fn`` starts)
    and "sending-result" (``fields["bytes"]``: its result has begun to arrive).
    Raises ``RankFailed`` naming the rank that failed first.
    """
    context = multiprocessing.get_context("spawn")
    processes, inboxes, folder = [], [], None
    try:
        folder = rendezvous.new_folder()
        # The arguments (a request can be megabytes) wait in a file: what spawn itself writes to
        # a new process stays small, so starting one never waits on it.
        rendezvous.write_args(folder, args)
        for rank in range(world_size):
            reader, writer = context.Pipe(duplex=False)
            inboxes.append(Inbox(reader))
            processes.append(context.Process(
                target=rank_main, daemon=True, name=f"pplab-rank-{rank}",
                args=(rank, world_size, backend, str(folder), timeout, fn, writer)))
            try:
                processes[-1].start()
            except OSError as error:
                raise RankFailed(f"rank {rank} failed: could not start a process: "
                                 f"{error.strerror or error}") from None
            finally:
                writer.close()  # the rank holds its own copy: end of file once it exits
        results = RankWatch(processes, inboxes, timeout, on_report).until_done()
    finally:
        _stop(processes)
        for inbox in inboxes:
            inbox.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return [_unpickle(rank, results[rank]) for rank in range(world_size)]


def _unpickle(rank: int, payload: bytes):
    try:
        return pickle.loads(payload)
    except Exception as error:
        raise RankFailed(f"rank {rank} failed: its result cannot be read: "
                         f"{describe_error(error)}") from None


def _stop(processes) -> None:
    """End every child within a bound. After its result a rank has nothing left to do, and
    tearing torch down takes seconds: it is terminated too, as is every rank of a failed run."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.is_alive():
            process.terminate()
            with suppress(OSError):  # a stopped process acts on SIGTERM only once continued
                os.kill(process.pid, signal.SIGCONT)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in started:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


def demo_rank(rank: int, world_size: int, report: Report) -> str:
    """A rank that needs no torch, for trying the supervisor out (see the module docstring)."""
    report("step", step=0)
    return f"rank {rank} of {world_size} in process {os.getpid()}"
