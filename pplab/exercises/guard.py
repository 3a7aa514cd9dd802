"""The guard: a learner's code runs in a child process that cannot reach pplab, start
processes or open the network, so a grade means the learner wrote the code.

One guard serves every door that runs learner code (the app's Lessons page, the notebooks'
checker, ``pplab exercise check --file`` and ``pplab exercise report``): ``run_guarded``
copies the learner's file into a fresh temporary folder and starts

    python -I -S -B pplab/exercises/guard_hook.py        (the request on stdin)

an isolated interpreter (no user site, no PYTHON* variables, no site-packages, no bytecode
written) with a minimal environment instead of the caller's, that folder as its working
directory, and bounded memory, CPU time and file size. Before the learner's code runs, the
child (``pplab.exercises.guard_hook``) installs an audit hook (PEP 578) that refuses, with one
line naming what was refused:

* importing pplab, torch, and the modules that start processes, open sockets or load native
  code, however the import is reached (``import``, ``__import__``, ``importlib``, after
  clearing ``sys.modules``): CPython raises the ``import`` audit event for each;
* reading a file outside the standard library and the temporary folder (so pplab's source
  cannot be read from disk and run), writing outside the temporary folder, and paths with
  ``..``;
* ``subprocess``, ``os.system``, ``os.exec*``, ``os.spawn*``, ``os.posix_spawn``, ``os.fork``,
  signals to other processes, sockets, ctypes, and the few calls that could disarm the hook
  (``gc.get_objects``, tracing, replacing a function's code, raising a resource limit).

A refusal ends the child at once with ``REFUSED_STATUS`` (no ``except`` in the learner's code
can swallow it), and the caller gives the file no points. The hook only ever touches values
captured before the learner's code ran, never an object the learner could have replaced.

What the child computes is handed back as plain JSON (lists of strings such as ``"2F0"``),
which the parent checks with pplab's own validate and simulator. A ``Policy`` names what is
refused: ``SCHEDULE_LAB`` for the coding lab (the standard library only); ``RUNTIME_LAB`` for a
lab that trains with ``torch.distributed``, with torch importable and pplab still out of
reach.

This module is the parent's side: the policies, and ``run_guarded`` (the only place that
imports ``subprocess``); ``guard_hook`` is the child's, standard library only.

    python -c "from pplab.exercises.guard import SCHEDULE_LAB; print(SCHEDULE_LAB)"
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from pplab.exercises import guard_hook
from pplab.exercises.guard_hook import (
    DISARM_EVENTS,
    NATIVE,
    NATIVE_EVENTS,
    NETWORK,
    NETWORK_EVENTS,
    OUTPUT_FILE,
    PPLAB,
    PROCESS_EVENTS,
    PROCESSES,
    REFUSAL_FILE,
    REFUSED_STATUS,
    RESULT_FILE,
    REWRITE_CODE,
    TORCH,
)


@dataclass(frozen=True)
class Policy:
    """What the guarded child refuses: modules (by top-level name) and audit events; whether
    site-packages is on its path (off: only the standard library is importable); and what it
    may read besides its path and its own folder (``/proc/self`` for a library that asks)."""

    refused_modules: tuple[str, ...] = PPLAB + TORCH + PROCESSES + NETWORK + NATIVE
    refused_events: tuple[str, ...] = (PROCESS_EVENTS + NETWORK_EVENTS + NATIVE_EVENTS
                                       + DISARM_EVENTS)
    site_packages: bool = False
    readable: tuple[str, ...] = ()
    # The task (pplab's own code) may load refused modules before the hook goes in: the
    # runtime lab's task builds pplab's toy GPT stage. The learner cannot import them, but
    # what the task loaded stays reachable through its objects (the stage's class): the toy
    # GPT, its config and the schedules package, never the engine's executor.
    task_loads_refused: bool = False


SCHEDULE_LAB = Policy()
# A lab whose learners write a runtime on torch.distributed: torch and its native code load,
# pplab stays out of reach, no process starts. torch reads /proc and /sys as it loads and
# replaces some functions' code; its own sockets are C++, which no audit hook sees.
# The task starts torch.distributed (in ``prepare``, before the hook), so the learner's code
# needs no socket of its own: Python-level network calls stay refused.
RUNTIME_LAB = Policy(refused_modules=PPLAB,
                     refused_events=tuple(e for e in PROCESS_EVENTS + NETWORK_EVENTS
                                          + DISARM_EVENTS if e != REWRITE_CODE),
                     site_packages=True, readable=("/proc", "/sys", "/etc", "/usr/lib", "/lib",
                                                   "/dev/shm"),
                     task_loads_refused=True)


@dataclass(frozen=True)
class Outcome:
    """What came back from a guarded run: the task's JSON answer, or why there is none."""

    answer: dict | None
    printed: str = ""
    refused: str | None = None  # the refusal's message: the file gets no points
    failed: str | None = None  # the child stopped (time, memory) before it answered


def _refused_paths(modules: tuple[str, ...]) -> list[str]:
    """Where the refused packages live on this machine (their folders), found without
    importing any: pplab's own folder first."""
    import importlib.util

    paths = [str(Path(__file__).resolve().parents[1])]
    for name in modules:
        if name in PPLAB or name in sys.builtin_module_names:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        for place in [*(spec.submodule_search_locations or ()), spec.origin]:
            if place and os.path.isabs(place) and Path(place).exists():
                paths.append(str(Path(place).resolve()))
    return paths


def run_guarded(task: Path, learner_file: Path, request: dict, *, policy: Policy = SCHEDULE_LAB,
                timeout: float = 30, memory_bytes: int = 2 * 2**30,
                written_bytes: int = 16 * 2**20, printed_chars: int = 3000) -> Outcome:
    """Run ``task``'s ``run(learner_path, request) -> dict`` on a copy of ``learner_file``
    in a guarded child; its answer, what the code printed, or why there is no answer. A task
    with a ``prepare(request)`` has it called first, before the hook goes in (the runtime
    lab joins its process group there)."""
    import shutil
    import signal
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pplab-guard-") as folder:
        here = Path(folder).resolve()
        copy = here / learner_file.name
        shutil.copyfile(learner_file, copy)
        payload = json.dumps({
            "task": str(Path(task).resolve()), "learner_file": str(copy), "request": request,
            "policy": asdict(policy), "refused_paths": _refused_paths(policy.refused_modules),
            "seconds": timeout, "memory_bytes": memory_bytes, "written_bytes": written_bytes})
        flags = ["-I", "-B"] + ([] if policy.site_packages else ["-S"])
        environment = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                       "HOME": str(here), "TMPDIR": str(here)}
        with open(here / OUTPUT_FILE, "wb") as output:
            child = subprocess.Popen([sys.executable, *flags,
                                      str(Path(guard_hook.__file__).resolve())],
                                     stdin=subprocess.PIPE, stdout=output,
                                     stderr=subprocess.STDOUT, cwd=here, env=environment,
                                     close_fds=True, start_new_session=True)
            try:
                child.communicate(payload.encode(), timeout=timeout)
                failed = None
            except subprocess.TimeoutExpired:
                failed = f"it ran longer than {timeout:g} s and was stopped (an endless loop?)"
            finally:
                try:  # the child and anything it started, in its own session
                    os.killpg(child.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                child.wait()
        printed = _read_bounded(here / OUTPUT_FILE, printed_chars)
        if child.returncode == REFUSED_STATUS:
            message = _read_bounded(here / REFUSAL_FILE, 600).strip()
            return Outcome(None, printed, refused=message or "refused an operation the lab "
                                                                "does not allow")
        if failed is not None:
            return Outcome(None, printed, failed=failed)
        try:
            answer = json.loads(_read_bounded(here / RESULT_FILE, written_bytes))
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            return Outcome(None, printed, failed=f"the grader's child process stopped (exit "
                                                 f"status {child.returncode}) before it "
                                                 f"answered")
        return Outcome(answer, printed)


def _read_bounded(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(limit).decode(errors="replace")
    except OSError:
        return ""
