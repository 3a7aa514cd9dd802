"""Launching a real training run from the browser, with bounds a shared machine can afford.

The Run page never trains inside the Streamlit process: it starts ``python -m pplab train
--json-progress`` as a child process and follows its one-JSON-object-per-line progress. The
request is bounded before anything starts (ranks no more than this machine's cores or GPUs,
steps, layers), only one run goes at a time across all browser sessions, and a run that
outlives its timeout is killed with its whole process group (it spawned one process per rank).

    streamlit run app/lab.py   (then open Run)
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

from pplab.schedules import SCHEDULES

MAX_STEPS = 200
MAX_LAYERS = 16
MAX_MICROBATCHES = 32
MAX_BATCH_SIZE = 512
TIMEOUT_S = 900
TASKS = ("reverse", "sort")

# One run at a time for the whole server: Streamlit serves every session from this process.
_ONE_RUN = threading.Lock()


class TrainingError(RuntimeError):
    """The run failed, timed out or could not start; the message is one line for the page."""


def gpu_count() -> int:
    """GPUs visible here, asked of nvidia-smi so the app never has to import torch."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    found = sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        found = min(found, len([d for d in visible.split(",") if d.strip()]))
    return found


def max_ranks(device: str) -> int:
    return gpu_count() if device == "cuda" else (os.cpu_count() or 1)


@dataclass(frozen=True)
class TrainRequest:
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

    @property
    def ranks(self) -> int:
        return self.pp_size * self.tp * self.dp

    def check(self, rank_limit: int) -> None:
        """Raise ValueError naming the numbers this machine or the lab will not take."""
        family = SCHEDULES.get(self.schedule)
        if family is None:
            raise ValueError(f"unknown schedule {self.schedule!r}")
        family.check(self.pp_size, self.microbatches, self.chunks)
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")
        if self.ranks > rank_limit:
            where = "GPUs" if self.device == "cuda" else "CPU cores"
            raise ValueError(f"pp {self.pp_size} x tp {self.tp} x dp {self.dp} = {self.ranks} "
                             f"ranks, but this machine has {rank_limit} {where}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be 1..{MAX_STEPS}, got {self.steps}")
        if not 1 <= self.microbatches <= MAX_MICROBATCHES:
            raise ValueError(f"microbatches must be 1..{MAX_MICROBATCHES}, got {self.microbatches}")
        if not 1 <= self.layers <= MAX_LAYERS:
            raise ValueError(f"layers must be 1..{MAX_LAYERS}, got {self.layers}")
        stages_total = self.pp_size * self.chunks
        if self.layers < stages_total:
            raise ValueError(f"{stages_total} stages need at least {stages_total} layers; "
                             f"the model has {self.layers}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if self.tp < 1 or self.dp < 1:
            raise ValueError(f"tp and dp must be at least 1, got tp {self.tp}, dp {self.dp}")
        if self.batch_size < self.microbatches:
            raise ValueError(f"batch size {self.batch_size} cannot be cut into "
                             f"{self.microbatches} microbatches")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")

    def run_name(self) -> str:
        """A new folder name in the engine's own pattern, e.g. 20261128-170453-1f1b-p2m4."""
        sizes = f"p{self.pp_size}m{self.microbatches}" + (f"v{self.chunks}" if self.chunks > 1
                                                           else "")
        extra = "".join(f"-{k}{v}" for k, v in (("tp", self.tp), ("dp", self.dp)) if v > 1)
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{self.schedule}-{sizes}{extra}"

    def argv(self, out: str) -> list[str]:
        """The ``pplab train`` command line; ``out`` is the new run directory."""
        args = [
            sys.executable, "-m", "pplab", "train", "--json-progress",
            "--schedule", self.schedule, "--pp", str(self.pp_size),
            "--microbatches", str(self.microbatches), "--steps", str(self.steps),
            "--layers", str(self.layers), "--batch-size", str(self.batch_size),
            "--device", self.device, "--task", self.task, "--seed", str(self.seed),
            "--out", out,
        ]
        if self.chunks > 1:
            args += ["--chunks", str(self.chunks)]
        if self.tp > 1:
            args += ["--tp", str(self.tp)]
        if self.dp > 1:
            args += ["--dp", str(self.dp)]
        return args


def _pump(stream, sink: Callable[[str], None]) -> None:
    for line in stream:
        sink(line.rstrip("\n"))
    stream.close()


def _stop(process: subprocess.Popen) -> None:
    """End the run and the rank processes it started: they share its process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()


def train(request: TrainRequest, out: str, on_progress: Callable[[dict], None],
          timeout: float = TIMEOUT_S) -> str:
    """Run ``pplab train`` to the end; return the run directory or raise TrainingError."""
    if not _ONE_RUN.acquire(blocking=False):
        raise TrainingError("another run is in progress on this machine; wait for it to end")
    try:
        return _train(request, out, on_progress, timeout)
    finally:
        _ONE_RUN.release()


def _train(request, out, on_progress, timeout) -> str:
    try:
        process = subprocess.Popen(
            request.argv(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, stdin=subprocess.DEVNULL,
        )
    except OSError as error:
        raise TrainingError(f"cannot start pplab train: {error}") from None
    lines: queue.Queue[str | None] = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, lines.put), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, stderr_tail.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    run_dir, error = None, None
    try:
        while readers[0].is_alive() or not lines.empty():
            if time.monotonic() > deadline:
                raise TrainingError(f"the run took longer than {timeout:.0f} s and was stopped")
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("event") == "step":
                step, steps, loss = (message.get(k) for k in ("step", "steps", "loss"))
                if isinstance(step, int) and isinstance(steps, int) and steps > 0:
                    loss = float(loss) if isinstance(loss, int | float) else None
                    on_progress({"event": "step", "step": step, "steps": steps, "loss": loss})
            elif message.get("event") == "done":
                run_dir = str(message.get("run_dir", ""))
            elif message.get("event") == "error":
                error = str(message.get("message", "the run failed"))
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise TrainingError(f"the run took longer than {timeout:.0f} s and was stopped") from None
    finally:
        _stop(process)
        for reader in readers:
            reader.join(timeout=5)
    if error or process.returncode != 0 or not run_dir:
        last = next((line for line in reversed(stderr_tail) if line.strip()), "")
        reason = error or last or f"pplab train exited with code {process.returncode}"
        raise TrainingError(reason.splitlines()[0] if reason else "the run failed")
    return run_dir
