"""Training runs started from the app: bounded requests, one at a time, followed and stoppable.

What it teaches: a shared machine's rules for real runs. The app never trains inside the
Streamlit process: it starts ``python -m pplab train --json-progress`` as a child process and
follows its one-JSON-object-per-line progress (ranks started, ranks ready, each step). A request is
checked before anything starts, by the same check as ``pplab train``
(``pplab.engine.request.check_request``) plus the app's bounds: no more ranks than this machine's
cores or GPUs, and the ``MAX_LAB_RUN_*`` bounds of ``pplab.limits`` (200 steps, 16 layers).
Only one run goes at a time across all browser sessions, and a run that outlives its
timeout, or whose page stops following it (the Stop button), is killed with its whole
process group (it spawned one process per rank) and leaves no run directory.

    python -c "from pplab.classroom.training_jobs import RunPageForm;
    RunPageForm('1f1b', 2, 4, 1, 3, 4, 16).check(rank_limit=2)"
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pplab import limits
from pplab.engine.machine import check_fits, rank_slots
from pplab.engine.request import TrainingRequest, check_request, new_run_dir
from pplab.engine.train_config import TrainConfig
from pplab.schedules import SCHEDULES
from pplab.topology import Topology

TIMEOUT_S = 900
TASKS = ("reverse", "sort")
STOP_GRACE_S = 10  # SIGTERM first, so the run cleans up; SIGKILL after this long
POLL_S = 0.25
TRAINING_NICENESS = 10  # how much a run started from the lab yields to the server's pages

# One run at a time for the whole server: Streamlit serves every session from this process.
_ONE_RUN = threading.Lock()


class TrainingError(RuntimeError):
    """The run failed, timed out or could not start; the message is one line for the page."""


def max_ranks(device: str) -> int:
    """The most ranks the Run page starts here: one per GPU on cuda, one per core on cpu."""
    return rank_slots(device)


@dataclass(frozen=True)
class RunPageForm:
    """What the Run page's form asks for (not yet a ``TrainingRequest``: ``check`` bounds it
    for this machine, ``config`` turns it into the ``TrainConfig`` that ``check_request`` reads)."""

    schedule: str
    pp_size: int
    microbatches: int
    chunks: int
    steps: int
    layers: int
    batch_size: int
    device: str = "cpu"
    task: str = "reverse"
    seed: int = 0
    tp: int = 1
    dp: int = 1

    def config(self, out: str = "-") -> TrainConfig:
        """The run as ``pplab train`` takes it. A family with one chunk per rank ignores
        ``chunks``; an interleaved one takes at least its minimum."""
        family = SCHEDULES.get(self.schedule)
        chunks = None
        if family is not None and family.max_chunks != 1:
            chunks = max(self.chunks, family.min_chunks)
        return TrainConfig(schedule=self.schedule, pp_size=self.pp_size,
                           microbatches=self.microbatches, chunks=chunks, steps=self.steps,
                           layers=self.layers, batch_size=self.batch_size, device=self.device,
                           task=self.task, seed=self.seed, tp_size=self.tp, dp_size=self.dp,
                           out=out)

    def check(self, rank_limit: int) -> TrainingRequest:
        """The checked training request; ValueError naming the numbers this machine or the lab
        won't take."""
        for name, value, limit in (
                ("steps", self.steps, limits.MAX_LAB_RUN_STEPS),
                ("microbatches", self.microbatches, limits.MAX_LAB_RUN_MICROBATCHES),
                ("layers", self.layers, limits.MAX_LAB_RUN_LAYERS),
                ("batch size", self.batch_size, limits.MAX_LAB_RUN_BATCH_SIZE)):
            if not 1 <= value <= limit:
                raise ValueError(f"{name} must be 1..{limit}, got {value}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        # The grid first: a request for 64 ranks is refused for the machine, not for layers.
        check_fits(Topology(self.pp_size, self.tp, self.dp), self.device, rank_limit)
        return check_request(self.config())


def run_dir_for(checked: TrainingRequest, root: str | Path) -> Path:
    """A new folder under ``root`` for the request ``RunPageForm.check`` returned, named as
    ``pplab train`` names its runs."""
    return new_run_dir(root, checked)


def train_command(request: RunPageForm, out: str) -> list[str]:
    """The ``pplab train`` command line of ``request``, writing to ``out``."""
    from pplab.cli.train import train_argv

    # Niced: the lab's server answers people, and a run's ranks that busy every core must
    # not slow every page of every session; on an idle machine nice changes nothing.
    nice = ["nice", "-n", str(TRAINING_NICENESS)] if shutil.which("nice") else []
    return [*nice, sys.executable, "-m", "pplab", "train", "--json-progress",
            *train_argv(request.config(out))]


def train(request: RunPageForm, out: str, on_progress: Callable[[dict], None],
          timeout: float = TIMEOUT_S, on_wait: Callable[[float], None] | None = None) -> str:
    """Run ``pplab train`` to the end; return the run directory or raise TrainingError.

    ``on_progress`` gets each "started", "ready" and "step" event (see ``pplab train
    --json-progress``); ``on_wait(seconds)`` is called every
    quarter second with the time since the start. An exception from either (Streamlit
    raises one when the page is rerun, e.g. by its Stop button) stops the run: its process
    group is killed and no run directory is left.
    """
    if not _ONE_RUN.acquire(blocking=False):
        raise TrainingError("another run is in progress on this machine; wait for it to end")
    try:
        return _train(request, out, on_progress, timeout, on_wait)
    finally:
        _ONE_RUN.release()


def _train(request, out, on_progress, timeout, on_wait) -> str:
    try:
        process = subprocess.Popen(
            train_command(request, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, stdin=subprocess.DEVNULL,
        )
    except OSError as error:
        raise TrainingError(f"cannot start pplab train: {error}") from None
    lines: queue.Queue[str] = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, lines.put), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, stderr_tail.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    run_dir, error = None, None
    try:
        while readers[0].is_alive() or not lines.empty():
            if time.monotonic() - started > timeout:
                raise TrainingError(f"the run took longer than {timeout:.0f} s and was stopped")
            if on_wait is not None:
                on_wait(time.monotonic() - started)
            try:
                message = _event(lines.get(timeout=POLL_S))
            except queue.Empty:
                continue
            if message is None:
                continue
            if message["event"] in ("started", "ready", "step"):
                on_progress(message)
            elif message["event"] == "done":
                run_dir = str(message.get("run_dir", ""))
            elif message["event"] == "error":
                error = str(message.get("message", "the run failed"))
        process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        raise TrainingError(f"the run took longer than {timeout:.0f} s and was stopped") from None
    finally:
        stop(process)
        for reader in readers:
            reader.join(timeout=5)
    if error or process.returncode != 0 or not run_dir:
        last = next((line for line in reversed(stderr_tail) if line.strip()), "")
        reason = error or last or f"pplab train exited with code {process.returncode}"
        raise TrainingError(reason.splitlines()[0] if reason else "the run failed")
    return run_dir


def _event(line: str) -> dict | None:
    """One progress line as a checked dict, or None for anything else on stdout."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        return None
    if message["event"] == "step":
        step, steps, loss = (message.get(k) for k in ("step", "steps", "loss"))
        if not (isinstance(step, int) and isinstance(steps, int) and steps > 0):
            return None
        return {"event": "step", "step": step, "steps": steps,
                "loss": float(loss) if isinstance(loss, int | float) else None}
    if message["event"] in ("started", "ready"):
        done, ranks = message.get(message["event"]), message.get("ranks")
        if not (isinstance(done, int) and isinstance(ranks, int) and ranks > 0):
            return None
    return message


def _pump(stream, sink: Callable[[str], None]) -> None:
    for line in stream:
        sink(line.rstrip("\n"))
    stream.close()


def stop(process: subprocess.Popen) -> None:
    """End a run and the rank processes it started: they share its process group.

    SIGTERM first (``pplab train`` then stops its ranks and removes its rendezvous folder),
    SIGKILL if that takes more than a few seconds.
    """
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
