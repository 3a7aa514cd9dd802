"""The one live training run of a lab server, followed by every browser session at once.

In a classroom the instructor starts a run and every student watches the same one: the run
goes on in a thread of the server (through ``pplab.classroom.training_jobs.train``, so every
bound and the one-run-at-a-time rule still hold), and each page only reads a snapshot of its
progress. A page that is closed or rerun does not stop it; only ``stop(owner)`` with the key
of the session that started it does. What is kept is bounded: one run, its losses (at most
``pplab.limits.MAX_LAB_RUN_STEPS``), a status line.

    python -c "from pplab.classroom.live_run import LIVE; print(LIVE.snapshot())"
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

from pplab.classroom.training_jobs import RunPageForm, TrainingError, train


class StopRequested(Exception):
    """Raised inside the run's wait callback: training_jobs then kills the run's processes."""


@dataclass(frozen=True)
class Snapshot:
    """What every page shows of the live run; immutable, so pages can read it at any time."""

    state: str = "idle"  # idle, running, done, failed, stopped
    label: str = ""
    owner: str = ""
    step: int = 0
    steps: int = 0
    losses: tuple[float, ...] = ()
    message: str = ""
    run_dir: str = ""
    started: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    @property
    def running(self) -> bool:
        return self.state == "running"


class LiveRun:
    """One run at a time, in a background thread; ``snapshot()`` is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def _update(self, **changes) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, updated=time.monotonic(), **changes)

    def start(self, request: RunPageForm, out: str, owner: str, label: str) -> None:
        """Start ``request`` for ``owner`` (a session's key); ValueError if one is running."""
        with self._lock:
            if self._snapshot.running:
                raise ValueError(f"a run is already live ({self._snapshot.label}); stop it "
                                 f"first")
            self._stop.clear()
            self._snapshot = Snapshot(state="running", label=label, owner=owner,
                                      steps=request.steps, started=time.monotonic(),
                                      message="starting the ranks")
            self._thread = threading.Thread(target=self._run, args=(request, out),
                                            name="pplab-live-run", daemon=True)
            self._thread.start()

    def stop(self, owner: str) -> bool:
        """Ask the live run to stop; only its owner may. True when a stop was asked."""
        with self._lock:
            if not self._snapshot.running or owner != self._snapshot.owner:
                return False
        self._stop.set()
        return True

    def wait(self, timeout: float | None = None) -> Snapshot:
        """Block until the live run has ended (for tests and scripts); its last snapshot."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    def _progress(self, message: dict) -> None:
        if message["event"] in ("started", "ready"):
            phase = message["event"]
            self._update(message=f"ranks {phase} {message[phase]}/{message['ranks']}")
            return
        losses = self.snapshot().losses
        if message["loss"] is not None:
            losses = (*losses, float(message["loss"]))
        self._update(step=message["step"], steps=message["steps"], losses=losses,
                     message=f"step {message['step']} of {message['steps']} (measured)")

    def _waiting(self, _seconds: float) -> None:
        if self._stop.is_set():
            raise StopRequested

    def _run(self, request: RunPageForm, out: str) -> None:
        try:
            run_dir = train(request, out, self._progress, on_wait=self._waiting)
        except StopRequested:
            self._update(state="stopped", message="stopped by the instructor; no run "
                                                  "directory was left")
        except TrainingError as error:
            self._update(state="failed", message=f"the run failed: {error}")
        else:
            self._update(state="done", run_dir=run_dir, message=f"done: saved to {run_dir}")


LIVE = LiveRun()  # the server's one live run: Streamlit serves every session from one process
