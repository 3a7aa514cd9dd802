"""Answers the lab's pages share across sessions, keyed by what was asked, computed once.

What it teaches: a class moving the same sliders asks the server the same few questions, so
the answer to each is worth keeping for everyone, and worth computing only once even when
thirty sessions ask at the same moment. The key is a digest of the function and its
arguments, the *content* asked for: the text of an uploaded CSV, never its file name, so a
file re-uploaded under another name is not computed again. Answers are kept in this
process, not in Streamlit's caches, which any client can empty for everyone with one
"clear cache" message; at most ``MAX_SHARED_RESULTS`` entries' worth are kept (a big
timeline counts for several), the least recently used going first. A kept answer is
shared, so it is never changed by whoever reads it.

Light work runs in the asking thread (``here``); heavy work goes to the work pool
(``submit``), which bounds it, gives it a deadline and cancels it when nobody waits.

    python -c "from pplab.classroom.shared_results import RESULTS; \\
    from pplab.classroom.page_work import family_order; from pplab.sim.simulator import \\
    CostModel; print(RESULTS.here(family_order, '1f1b', 4, 8, 1, CostModel()).metrics)"
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable

import pandas as pd

from pplab.classroom.work_pool import POOL, Job, WorkPool
from pplab.limits import MAX_SHARED_RESULTS

_MISSING = object()
EVENTS_PER_ENTRY = 20_000  # about 2 MB of an Event table


def _rows(value: object) -> int:
    """Rows of the Event tables an answer holds (itself, its ``events``, a tuple's parts)."""
    if isinstance(value, tuple):
        return sum(_rows(part) for part in value)
    events = getattr(value, "events", value)
    return len(events) if isinstance(events, pd.DataFrame) else 0


def _weight(value: object) -> int:
    """How many entries' worth of room an answer takes: one, and one more for every
    ``EVENTS_PER_ENTRY`` rows of timeline it holds, so a few huge ones cannot fill the
    memory. (A Playground view, its timeline and figures, is about 400 KiB in 4 entries.)"""
    return 1 + _rows(value) // EVENTS_PER_ENTRY


def _canonical(value: object) -> object:
    """``value`` as nested tuples of plain values: a frozen dataclass by its class's name and
    its fields (a class defined in a page module that Streamlit re-imports is still the same
    key), containers by their items, anything else by its pickle."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        return (kind.__module__, kind.__qualname__,
                tuple((f.name, _canonical(getattr(value, f.name)))
                      for f in dataclasses.fields(value)))
    if isinstance(value, enum.Enum):
        return (type(value).__qualname__, _canonical(value.value))
    if value is None or isinstance(value, str | bytes | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple((_canonical(k), _canonical(v)) for k, v in value.items()))
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def content_key(module: str, function: str, args: tuple, kwargs: dict) -> str:
    """A digest of what is asked: the function and the values of its arguments."""
    asked = (module, function, _canonical(args), _canonical(dict(sorted(kwargs.items()))))
    return hashlib.sha256(pickle.dumps(asked, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


class Ticket:
    """A heavy answer on its way: ``wait`` in slices, then ``result``; ``release`` always."""

    def __init__(self, results: SharedResults, key: str, job: Job | None,
                 value: object = _MISSING, pool: WorkPool | None = None) -> None:
        self._results, self.key, self._job, self._value = results, key, job, value
        self._pool = pool or results.pool
        self._released = job is None

    def wait(self, timeout: float) -> bool:
        return self._job is None or self._job.wait(timeout)

    def result(self) -> object:
        if self._value is _MISSING:
            self._value = self._job.result()  # raises the worker's error, OutOfTime, ...
            self._results.keep(self.key, self._value)
        return self._value

    def release(self) -> None:
        """This page stops waiting (the last one to stop cancels unfinished work)."""
        if not self._released:
            self._released = True
            self._pool.release(self._job)


class SharedResults:
    """A bounded, thread-safe map from content keys to answers, filled once per key."""

    def __init__(self, pool: WorkPool = POOL, max_entries: int = MAX_SHARED_RESULTS) -> None:
        self.pool = pool
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._values: OrderedDict[str, object] = OrderedDict()
        self._computing: dict[str, threading.Event] = {}
        self._weight = 0

    def __len__(self) -> int:
        return len(self._values)

    def lookup(self, key: str) -> object:
        """The kept answer, or ``_MISSING``."""
        with self._lock:
            value = self._values.get(key, _MISSING)
            if value is not _MISSING:
                self._values.move_to_end(key)
            return value

    def keep(self, key: str, value: object) -> None:
        with self._lock:
            if key in self._values:
                self._weight -= _weight(self._values[key])
            self._values[key] = value
            self._values.move_to_end(key)
            self._weight += _weight(value)
            while self._weight > self.max_entries and len(self._values) > 1:
                self._weight -= _weight(self._values.popitem(last=False)[1])

    def here(self, function: Callable, *args, **kwargs) -> object:
        """``function(*args, **kwargs)`` computed in this thread, once for everyone (the key is
        the function's module and name with the arguments' values): a thread that asks while
        another computes the same waits for its answer."""
        key = content_key(function.__module__, function.__qualname__, args, kwargs)
        while True:
            value = self.lookup(key)
            if value is not _MISSING:
                return value
            with self._lock:
                running = self._computing.get(key)
                if running is None:
                    self._computing[key] = threading.Event()
            if running is None:
                break
            running.wait()  # then read its answer, or compute it if it failed
        try:
            value = function(*args, **kwargs)
            self.keep(key, value)
            return value
        finally:
            with self._lock:
                self._computing.pop(key).set()

    def submit(self, function: Callable, *args, label: str = "", lane: WorkPool | None = None,
               **kwargs) -> Ticket:
        """A ticket for ``function(*args, **kwargs)`` computed by the work pool (``lane``, or
        this one's), or already kept; ``function`` is a module-level function of pplab, which
        a worker imports. Raises ``work_pool.Busy`` when the pool's waiting line is full."""
        module, name = function.__module__, function.__qualname__
        key = content_key(module, name, args, kwargs)
        value = self.lookup(key)
        if value is not _MISSING:
            return Ticket(self, key, None, value)
        pool = lane or self.pool
        return Ticket(self, key, pool.submit(key, module, name, *args, label=label, **kwargs),
                      pool=pool)

    def clear(self) -> None:
        """Forget every answer (tests; a server never needs to)."""
        with self._lock:
            self._values.clear()
            self._weight = 0


RESULTS = SharedResults()  # one per server, shared by every session
