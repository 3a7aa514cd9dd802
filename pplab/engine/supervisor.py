"""Starting one process per rank and watching them until each has answered or one has failed.

What it teaches: a pipeline is many processes that must start together and fail together.
``spawn_ranks`` starts ``world_size`` fresh Python processes ("spawn", never fork: torch
does not survive a fork), lets them meet through a rendezvous file in a new temporary
directory (so two runs never collide on a port) and runs ``fn(rank, world_size, report,
*args)`` in each, one CPU thread per rank.

The parent never waits without a bound. It polls a message queue a tenth of a second at a
time and, between polls, looks at every child: one that raised reported its error, one that
died shows an exit code, one that is stuck stops sending. The first failure ends the run at
once: the other ranks are terminated (then killed, after a grace period), and the caller
gets ``RankFailed`` with the root cause: "rank 2 failed: killed by signal 9", not the echoes
("connection closed by peer") of the ranks that were waiting for it. When nothing at all is
heard for ``timeout`` seconds, the rank blamed is the one furthest behind: the lowest step
reported, and among equals the one heard from least recently.

The engine (``pplab train``), the benchmarks and the multi-process tests all start their
ranks here.

    python -c "from pplab.engine.supervisor import spawn_ranks, demo_rank;
    print(spawn_ranks(2, demo_rank, backend=None))"
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

GRACE_SECONDS = 5.0  # a terminated rank gets this long before it is killed outright
POLL_SECONDS = 0.1
LAST_WORDS_SECONDS = 0.5  # how long a dead rank's own error message may take to arrive
PARENT_CHECK_SECONDS = 1.0

# fn(rank, world_size, report, *args); report(event, **fields) tells the parent something.
Report = Callable[..., None]
OnReport = Callable[[int, str, dict], None]


class RankFailed(RuntimeError):
    """A rank raised, died or stopped making progress; the message is "rank R failed: ..."."""


def describe_error(error: BaseException) -> str:
    """``TypeName: first line of the message``: one line, whatever the error."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


# How far a rank has come before its first step: each phase is one report to the parent.
PHASES = ("spawned", "started", "joined")  # started: Python and torch loaded; joined: group up


@dataclass
class RankProgress:
    """What the parent last heard from one rank."""

    phase: int = 0  # index into PHASES
    step: int = -1  # the highest step it reported
    heard_at: float = 0.0  # time.monotonic() of its last message (or of the spawn)

    def where(self) -> str:
        if self.step >= 0:
            return f"it last reported step {self.step}"
        return {0: "it never started", 1: "it had not joined the process group",
                2: "it had joined but reported no step"}[self.phase]


def slowest_rank(progress: dict[int, RankProgress]) -> int:
    """The rank furthest behind: earliest phase, then lowest step, then heard from longest ago."""
    return min(progress, key=lambda r: (progress[r].phase, progress[r].step,
                                        progress[r].heard_at, r))


def spawn_ranks(world_size: int, fn: Callable, *args, backend: str | None = "gloo",
                timeout: float = 300.0, on_report: OnReport | None = None) -> list:
    """Run ``fn(rank, world_size, report, *args)`` on ``world_size`` new processes.

    Returns the results in rank order. ``fn`` must be importable by name (a module-level
    function), as spawn requires; its result is pickled, so tensors travel safely.
    ``backend`` is the torch.distributed backend each rank joins before ``fn`` runs (None:
    no process group, no torch). ``timeout`` bounds both the process group's own waits and
    the parent's patience: the run fails when no rank is heard from for that long.
    ``on_report(rank, event, fields)`` sees, in the parent, every ``report`` of every rank,
    and the supervisor's own: "started" (the rank's Python, and torch, are loaded) and
    "joined" (its process group is up; ``fn`` starts).
    Raises ``RankFailed`` naming the rank that failed first.
    """
    context = multiprocessing.get_context("spawn")
    outbox = context.Queue()
    rendezvous = tempfile.mkdtemp(prefix="pplab-rdv-")
    processes = [context.Process(target=_rank_main, daemon=True,
                                 args=(rank, world_size, backend, f"file://{rendezvous}/store",
                                       timeout, fn, args, outbox))
                 for rank in range(world_size)]
    try:
        for process in processes:
            process.start()
        results = _watch(processes, outbox, timeout, on_report)
    finally:
        _stop(processes)
        outbox.close()
        shutil.rmtree(rendezvous, ignore_errors=True)
    return [pickle.loads(results[rank]) for rank in range(world_size)]


def _watch(processes, outbox, timeout: float, on_report: OnReport | None) -> dict[int, bytes]:
    """Poll until every rank has sent its result; raise RankFailed at the first failure."""
    world_size = len(processes)
    progress = {rank: RankProgress(heard_at=time.monotonic()) for rank in range(world_size)}
    results: dict[int, bytes] = {}
    errors: dict[int, tuple[float, str]] = {}
    deadline = time.monotonic() + timeout
    failing_since = None
    while len(results) < world_size:
        # Looked at before reading: a rank that has exited has flushed its messages, so an
        # empty queue after this means they are truly missing.
        all_exited = all(p.exitcode is not None for p in processes)
        try:
            kind, rank, data = outbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            kind = None
        if kind is not None:
            # The timeout stops a stuck run, not a long one: every message is progress.
            deadline = time.monotonic() + timeout
            progress[rank].heard_at = time.monotonic()
            if kind == "report":
                event, fields = data
                if event in PHASES:
                    progress[rank].phase = max(progress[rank].phase, PHASES.index(event))
                if isinstance(fields.get("step"), int):
                    progress[rank].step = max(progress[rank].step, fields["step"])
                if on_report is not None:
                    on_report(rank, event, fields)
            elif kind == "result":
                results[rank] = data
                progress.pop(rank, None)
            elif kind == "error":
                errors.setdefault(rank, data)
            continue
        dead = {r: p.exitcode for r, p in enumerate(processes)
                if p.exitcode not in (None, 0) and r not in errors}
        if errors or dead:
            failing_since = failing_since or time.monotonic()
            # Give a dying rank a moment to deliver its own message before choosing (when
            # every rank has exited, no message is still on its way).
            if not dead or all_exited or time.monotonic() - failing_since > LAST_WORDS_SECONDS:
                raise RankFailed(root_cause(errors, dead))
        if time.monotonic() > deadline:
            rank = slowest_rank(progress)
            raise RankFailed(f"rank {rank} failed: no progress within the timeout of "
                             f"{timeout:g} s ({progress[rank].where()})")
        if all_exited:
            missing = sorted(set(range(world_size)) - set(results))
            raise RankFailed(f"rank {missing[0]} failed: exited without a result")
    return results


def root_cause(errors: dict[int, tuple[float, str]], dead: dict[int, int]) -> str:
    """The first cause, not its echoes: a rank killed by a signal, else the earliest error."""
    for rank, code in sorted(dead.items()):
        if code < 0:
            return f"rank {rank} failed: killed by signal {-code}"
    if errors:
        rank = min(errors, key=lambda r: errors[r][0])
        return f"rank {rank} failed: {errors[rank][1]}"
    rank, code = min(dead.items())
    return f"rank {rank} failed: exited with code {code}"


def _stop(processes) -> None:
    """End every child within a bound. After its result a rank has nothing left to do, and
    tearing torch down takes seconds: it is terminated too, as is every rank of a failed run."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


def _rank_main(rank: int, world_size: int, backend: str | None, init_method: str,
               timeout: float, fn: Callable, args: tuple, outbox) -> None:
    """Entry point of a spawned rank: join, run ``fn``, answer; never leave a traceback."""
    parent = os.getppid()

    def watch_parent() -> None:
        # A parent killed outright cannot terminate us; do not sit in a receive until timeout.
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()

    def report(event: str, **fields) -> None:
        outbox.put(("report", rank, (event, fields)))

    try:
        dist = None
        if backend is not None:
            import torch
            import torch.distributed as dist

            torch.set_num_threads(1)  # one rank per core: threads would fight over them
        report("started")
        if dist is not None:
            dist.init_process_group(backend, init_method=init_method, rank=rank,
                                    world_size=world_size, timeout=timedelta(seconds=timeout))
        report("joined")
        result = fn(rank, world_size, report, *args)
        # Pickled here: a torch queue would share tensors by file descriptor, and those die
        # with this process.
        payload = pickle.dumps(result)
        if dist is not None:
            dist.barrier()  # nobody leaves while a peer may still be talking to it
            dist.destroy_process_group()
        outbox.put(("result", rank, payload))
    except BaseException as error:  # report any failure, then exit non-zero
        outbox.put(("error", rank, (time.time(), describe_error(error))))
        outbox.close()
        outbox.join_thread()
        os._exit(1)


def demo_rank(rank: int, world_size: int, report: Report) -> str:
    """A rank that needs no torch, for trying the supervisor out (see the module docstring)."""
    report("step", step=0)
    return f"rank {rank} of {world_size} in process {os.getpid()}"
