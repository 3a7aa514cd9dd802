"""What the parent knows of its ranks while it waits for them, and whom it blames first.

What it teaches: a parent that waits on many processes must never wait without a bound, and
when the run fails it must name the cause, not its echoes. Each rank writes to a pipe of its
own (``rank_channel``); ``RankWatch`` looks at all of them a tenth of a second at a time,
reads only the bytes that are there, and between looks checks every child: one that raised
reported its error, one that died shows an exit code, one that is stopped (SIGSTOP, a
debugger) has stopped its heartbeat. A rank that dies halfway through a message, even its
large result, leaves half a frame behind, not a parent stuck reading it. The first failure
is ``RankFailed`` with the root cause: "rank 2 failed: killed by signal 9", not the echoes
("connection closed by peer", "timed out") of the ranks that were waiting for it. When no
rank reports progress for ``timeout`` seconds, the rank blamed is a stopped one if there is
one, else the one furthest behind: the lowest step reported, and among equals the one heard
from least recently. Starting Python and torch is not progress, and can take longer than a
step on a busy machine: until every rank has joined, ranks that keep beating get
``STARTUP_SECONDS`` (or ``timeout``, if longer). Once a rank has delivered its result,
whatever happens to it while it tears torch down no longer matters.

``pplab.engine.supervisor`` starts the processes and stops them; this module only watches.

    python -c "from pplab.engine.rank_watch import RankProgress, slowest_rank; \
print(slowest_rank({0: RankProgress(2, 5), 1: RankProgress(2, 3)}))"
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from pathlib import Path

from pplab.engine.rank_channel import (
    BEAT,
    ERROR,
    HEARTBEAT_SECONDS,
    REPORT,
    RESULT,
    STARTUP_SECONDS,
    describe_error,
)

POLL_SECONDS = 0.1
LAST_WORDS_SECONDS = 0.5  # how long the other ranks' messages may take to arrive after a failure
MISSED_BEATS = 3  # a rank silent this many heartbeats, though alive, is stalled
SUSPENDED_SECONDS = 2.0  # a longer pause between two looks means the parent itself was stopped

# on_report(rank, event, fields): what the parent hears from every rank, and its own news.
OnReport = Callable[[int, str, dict], None]


class RankFailed(RuntimeError):
    """A rank raised, died or stopped making progress; the message is "rank R failed: ..."."""


# How far a rank has come before its first step: each phase is one report to the parent.
PHASES = ("spawned", "started", "joined")  # started: Python and torch loaded; joined: group up


@dataclass
class RankProgress:
    """What the parent last heard from one rank."""

    phase: int = 0  # index into PHASES
    step: int = -1  # the highest step it reported
    heard_at: float = 0.0  # time.monotonic() of its last report (or of the spawn)

    def where(self) -> str:
        if self.step >= 0:
            return f"it last reported step {self.step}"
        return {0: "it never started", 1: "it had not joined the process group",
                2: "it had joined but reported no step"}[self.phase]


def slowest_rank(progress: dict[int, RankProgress]) -> int:
    """The rank furthest behind: earliest phase, then lowest step, then heard from longest ago."""
    return min(progress, key=lambda r: (progress[r].phase, progress[r].step,
                                        progress[r].heard_at, r))


def process_state(pid: int | None) -> str | None:
    """The one-letter state of a process from /proc (T: stopped), or None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class RankWatch:
    """What the parent knows of its ranks while it waits for their results."""

    def __init__(self, processes, inboxes, timeout: float, on_report: OnReport | None):
        self.processes, self.inboxes = processes, inboxes
        self.timeout, self.on_report = timeout, on_report
        now = time.monotonic()
        self.progress = {rank: RankProgress(heard_at=now) for rank in range(len(processes))}
        self.beat_at: dict[int, float] = {}  # last heartbeat (or any message) of each rank
        self.results: dict[int, bytes] = {}
        self.errors: dict[int, tuple[float, str]] = {}
        self.deadline = now + timeout
        # Starting Python and torch is not training: it gets its own, longer bound.
        self.startup_deadline = now + max(timeout, STARTUP_SECONDS)
        self.looked_at = now

    def until_done(self) -> dict[int, bytes]:
        """Look until every rank has sent its result; raise RankFailed at the first failure."""
        failing_since = None
        while len(self.results) < len(self.processes):
            self._read()
            now = time.monotonic()
            if now - self.looked_at > SUSPENDED_SECONDS:  # we were stopped (Ctrl-Z): not them
                self.deadline += now - self.looked_at
                self.startup_deadline += now - self.looked_at
                self.beat_at = {rank: at + now - self.looked_at
                                for rank, at in self.beat_at.items()}
            self.looked_at = now
            if len(self.results) == len(self.processes):
                break
            dead = self._dead()
            if not (self.errors or dead):
                failing_since = None  # e.g. a rank that died after its result, read just now
            else:
                failing_since = failing_since or now
                # The other ranks' messages may still be on their way: wait for them, but
                # not longer than a moment, and not at all once every rank has said all.
                if self._all_said() or now - failing_since > LAST_WORDS_SECONDS:
                    raise RankFailed(self._root_cause(dead, now))
            if now > self.deadline and not self._starting(now):
                raise RankFailed(self._no_progress(now))
        return self.results

    def _read(self) -> None:
        open_boxes = {inbox.connection: rank for rank, inbox in enumerate(self.inboxes)
                      if not inbox.closed}
        if not open_boxes:
            time.sleep(POLL_SECONDS)
            return
        for ready in mp_connection.wait(list(open_boxes), timeout=POLL_SECONDS):
            rank = open_boxes[ready]
            try:
                messages = self.inboxes[rank].read()
            except Exception as error:  # a message that does not unpickle: that rank's fault
                raise RankFailed(f"rank {rank} failed: its message cannot be read: "
                                 f"{describe_error(error)}") from None
            for kind, body in messages:
                self._take(rank, kind, body)

    def _take(self, rank: int, kind: bytes, body) -> None:
        now = time.monotonic()
        self.beat_at[rank] = now
        if kind == BEAT:
            return
        if kind == b"result-begins":
            if self.on_report is not None:
                self.on_report(rank, "sending-result", {"bytes": body})
            return
        # The timeout stops a stuck run, not a long one: every other message is progress.
        self.deadline = now + self.timeout
        if rank in self.progress:
            self.progress[rank].heard_at = now
        if kind == REPORT:
            event, fields = body
            if rank in self.progress and event in PHASES:
                self.progress[rank].phase = max(self.progress[rank].phase, PHASES.index(event))
            if rank in self.progress and isinstance(fields.get("step"), int):
                self.progress[rank].step = max(self.progress[rank].step, fields["step"])
            if self.on_report is not None:
                self.on_report(rank, event, fields)
        elif kind == RESULT:
            self.results[rank] = body
            self.progress.pop(rank, None)
        elif kind == ERROR:
            self.errors.setdefault(rank, body)

    def _dead(self) -> dict[int, int]:
        """Ranks that ended without a result: exit code (negative: killed by that signal)."""
        return {rank: process.exitcode for rank, process in enumerate(self.processes)
                if process.exitcode is not None and rank not in self.results
                and (process.exitcode != 0 or self.inboxes[rank].closed)}

    def _all_said(self) -> bool:
        """Every rank has delivered its result or exited with its pipe read to the end."""
        return all(rank in self.results or (process.exitcode is not None
                                            and self.inboxes[rank].closed)
                   for rank, process in enumerate(self.processes))

    def _stalled(self, now: float) -> list[tuple[int, str]]:
        """Ranks alive but not running, longest silent first, each with what was seen."""
        found = []
        for rank, process in enumerate(self.processes):
            if rank in self.results or process.exitcode is not None:
                continue
            silent = now - self.beat_at.get(rank, now)
            if process_state(process.pid) in ("T", "t"):
                found.append((silent, rank, "the process is stopped, by SIGSTOP or a debugger"))
            elif silent > MISSED_BEATS * HEARTBEAT_SECONDS:  # it beat before, then fell silent
                found.append((silent, rank, f"it is alive but sent no heartbeat for "
                                            f"{silent:.0f} s: suspended or frozen"))
        return [(rank, reason) for _, rank, reason in sorted(found, reverse=True)]

    def _while_sending(self, rank: int) -> str:
        size = self.inboxes[rank].result_bytes
        return "" if size is None else f", while sending its result of {size:,} bytes"

    def _root_cause(self, dead: dict[int, int], now: float) -> str:
        """The first cause, not its echoes: a rank killed by a signal, then one that is
        stopped (its peers' timeouts are echoes of it), then the earliest error."""
        for rank, code in sorted(dead.items()):
            if code < 0:
                return f"rank {rank} failed: killed by signal {-code}{self._while_sending(rank)}"
        stalled = self._stalled(now)
        if stalled:
            rank, reason = stalled[0]
            return f"rank {rank} failed: {reason}{self._while_sending(rank)}"
        if self.errors:
            rank = min(self.errors, key=lambda r: self.errors[r][0])
            return f"rank {rank} failed: {self.errors[rank][1]}"
        rank, code = min(dead.items())
        if code == 0:
            return f"rank {rank} failed: exited without a result{self._while_sending(rank)}"
        return f"rank {rank} failed: exited with code {code}{self._while_sending(rank)}"

    def _starting(self, now: float) -> bool:
        """Some rank is still loading Python and torch, alive and beating, within the bound."""
        stalled = {rank for rank, _ in self._stalled(now)}
        return now <= self.startup_deadline and any(
            progress.phase < PHASES.index("joined") and rank not in stalled
            for rank, progress in self.progress.items())

    def _no_progress(self, now: float) -> str:
        stalled = self._stalled(now)
        if stalled:
            rank, reason = stalled[0]
        else:
            rank = slowest_rank(self.progress)
            reason = self.progress[rank].where()
            if self.progress[rank].phase < PHASES.index("joined"):
                return (f"rank {rank} failed: not started within "
                        f"{max(self.timeout, STARTUP_SECONDS):g} s ({reason})")
        return (f"rank {rank} failed: no progress within the timeout of {self.timeout:g} s "
                f"({reason}{self._while_sending(rank)})")
