"""Fair use of one lab server: heavy requests in a bounded pool of worker processes.

What it teaches: a server shared by a class is judged by its slowest answer. Streamlit serves
every session from one Python process, so one request that computes for half a minute (the
planner ranking a trillion-parameter model's layouts, a huge custom CSV) holds the CPU and the
interpreter lock while every other student's page waits, and goes on after its student has
closed the tab. Here such requests run in worker processes beside the server, at a lower
priority:

* **bounded**: one worker per core but one (at most ``MAX_WORK_PROCESSES``), and at most
  ``MAX_WORK_WAITING_PER_PROCESS`` requests waiting per worker; one more is refused at once
  with ``Busy`` ("busy, try again") instead of queueing the class behind it;
* **a deadline**: a request still running after ``WORK_DEADLINE_S`` has its worker killed
  (``OutOfTime``); a fresh worker takes the next one;
* **cancelled** when nobody waits any more: a page that goes away (its session closed, or
  rerun with other values) releases its job, and the last release kills the work;
* **shared**: two sessions asking for the same thing (the same key) wait on one job.

Workers run pplab's own functions (``pplab.classroom.work_worker``), never a learner's code.

    python -c "from pplab.classroom.work_pool import POOL; \\
    print(POOL.run('x', 'pplab.classroom.page_work', 'searched_order', 4, 8, 2))"
"""

from __future__ import annotations

import atexit
import collections
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time

from pplab.classroom.passcode import DIGEST_ENV
from pplab.classroom.work_worker import read_frame, write_frame
from pplab.limits import (
    MAX_WORK_ANSWER_BYTES,
    MAX_WORK_PROCESSES,
    MAX_WORK_WAITING_PER_PROCESS,
    WORK_DEADLINE_S,
)

POLL_S = 0.1


class Busy(RuntimeError):
    """Every worker is taken and the waiting line is full; the message is one line."""


class OutOfTime(RuntimeError):
    """The request ran past its deadline and was stopped."""


class Cancelled(RuntimeError):
    """Nobody waits for the request any more; it was stopped."""


class Job:
    """One request, shared by every session that asked for the same key."""

    def __init__(self, key: str, call: bytes, label: str) -> None:
        self.key, self.call, self.label = key, call, label
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None
        self.waiters = 1
        self.cancelled = False
        self.started: float | None = None

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def result(self) -> object:
        if self.error is not None:
            raise self.error
        return self.value


def default_workers() -> int:
    return max(1, min(MAX_WORK_PROCESSES, (os.cpu_count() or 2) - 1))


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != DIGEST_ENV}
    # One thread of numerical code per worker: the pool, not BLAS, decides what runs at once.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class WorkPool:
    """Worker processes, a bounded waiting line, a deadline per request."""

    def __init__(self, workers: int | None = None, waiting_per_worker: int =
                 MAX_WORK_WAITING_PER_PROCESS, deadline_s: float = WORK_DEADLINE_S) -> None:
        self.workers = workers or default_workers()
        self.max_waiting = self.workers * waiting_per_worker
        self.deadline_s = deadline_s
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}  # waiting or running, by key
        self._running = 0
        self._processes: set[subprocess.Popen] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def warm(self) -> None:
        """Start the workers now (each imports pplab once) instead of at the first request."""
        with self._cond:
            if self._threads or self._closed:
                return
            for n in range(self.workers):
                thread = threading.Thread(target=self._serve, name=f"pplab-work-{n}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()

    def load(self) -> tuple[int, int]:
        """(requests running, requests waiting)."""
        with self._cond:
            return self._running, len(self._waiting)

    def submit(self, key: str, module: str, function: str, *args, label: str = "",
               **kwargs) -> Job:
        """The job computing ``module.function(*args, **kwargs)``: a running one with the same
        key is joined. Raises Busy when the waiting line is full. Call ``release`` after."""
        call = pickle.dumps((module, function, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        self.warm()
        with self._cond:
            if self._closed:
                raise Busy("the lab is shutting down")
            job = self._jobs.get(key)
            if job is not None:
                job.waiters += 1
                return job
            if len(self._waiting) >= self.max_waiting:
                raise Busy(f"the lab is busy: {self._running} heavy requests are running and "
                           f"{len(self._waiting)} waiting ({self.workers} worker process"
                           f"{'es' if self.workers > 1 else ''} for the whole class); try again "
                           f"in a few seconds")
            job = self._jobs[key] = Job(key, call, label or f"{module}.{function}")
            self._waiting.append(job)
            self._cond.notify()
            return job

    def release(self, job: Job) -> None:
        """One waiter leaves; when the last one leaves an unfinished job, it is cancelled."""
        with self._cond:
            job.waiters -= 1
            if job.waiters > 0 or job.done.is_set():
                return
            job.cancelled = True
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
            if job in self._waiting:
                self._waiting.remove(job)
                job.error = Cancelled(f"{job.label} was cancelled before it started")
                job.done.set()
            # a running job: its worker is killed within POLL_S by the thread serving it

    def run(self, key: str, module: str, function: str, *args, **kwargs) -> object:
        """Submit, wait and return the value (for scripts and tests; pages wait in slices)."""
        job = self.submit(key, module, function, *args, **kwargs)
        try:
            job.wait()
            return job.result()
        finally:
            self.release(job)

    def shutdown(self) -> None:
        """Stop every worker; later submissions are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            processes = list(self._processes)
        for process in processes:
            _kill(process)

    # --- the threads that feed the workers ---------------------------------------------

    def _next(self) -> Job | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            job = self._waiting.popleft()
            job.started = time.monotonic()
            self._running += 1
            return job

    def _start_worker(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "pplab.classroom.work_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=_worker_env(), start_new_session=True)
        with self._cond:
            self._processes.add(process)
        return process

    def _serve(self) -> None:
        process = self._start_worker()
        while True:
            job = self._next()
            if job is None:
                break
            if process.poll() is not None:
                self._forget(process)
                process = self._start_worker()
            value, error = self._ask(process, job)
            if error is not None and not isinstance(error, ValueError):
                self._forget(process)  # killed, dead or out of step: start afresh
                process = self._start_worker()
            with self._cond:
                self._running -= 1
                job.value, job.error = value, error
                if self._jobs.get(job.key) is job:
                    del self._jobs[job.key]
                job.done.set()
        self._forget(process)

    def _ask(self, process: subprocess.Popen, job: Job) -> tuple[object, BaseException | None]:
        """Send ``job`` to ``process`` and wait for its answer, its deadline or its cancel."""
        try:
            write_frame(process.stdin, job.call)
            while True:
                if job.cancelled:
                    return None, Cancelled(f"{job.label} was stopped: nobody waits for it")
                if time.monotonic() - job.started > self.deadline_s:
                    return None, OutOfTime(f"{job.label} ran longer than {self.deadline_s:g} s "
                                           f"and was stopped; choose smaller sizes")
                ready, _, _ = select.select([process.stdout], [], [], POLL_S)
                if ready:
                    break
            reply = read_frame(process.stdout, MAX_WORK_ANSWER_BYTES + 2**16)
        except (OSError, ValueError) as error:
            return None, RuntimeError(f"a worker of the lab failed on {job.label}: {error}")
        if reply is None:
            return None, RuntimeError(f"a worker of the lab stopped (exit status "
                                      f"{process.poll()}) before it answered {job.label}")
        status, value = pickle.loads(reply)
        if status == "ok":
            return value, None
        return None, value if isinstance(value, BaseException) else RuntimeError(str(value))

    def _forget(self, process: subprocess.Popen) -> None:
        _kill(process)
        with self._cond:
            self._processes.discard(process)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass
    process.wait()


POOL = WorkPool()  # one per server: Streamlit serves every session from this process
# The Presenter's lane: the projector's figures are heavy to build (a second or more each,
# Plotly's animation frames) but must not wait behind a student's ranking in POOL.
PRESENTER_POOL = WorkPool(workers=1)
atexit.register(POOL.shutdown)
atexit.register(PRESENTER_POOL.shutdown)
