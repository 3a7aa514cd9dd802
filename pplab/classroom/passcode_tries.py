"""Wrong passcodes counted per client address, across every browser session it opens.

A limit kept in a session's own state is no limit: a new websocket is a new session with a
fresh count, and Streamlit's "clear cache" message wipes a session's state. So the server
counts wrong tries per client address, in this process, and makes that address wait before
its next try: ``PASSCODE_FIRST_WAIT_S`` after the first wrong one, doubling with each, and
after ``MAX_PASSCODE_TRIES`` a lockout of ``PASSCODE_LOCKOUT_S`` that keeps doubling
(pplab.limits). A try made while the address must wait is not checked at all. Every wrong
try is logged on the server's standard error, the terminal where the instructor started
``pplab lab``, with the address and the count, so the instructor sees a student guessing.

A class behind one NAT shares one address: a student who guesses makes the whole room wait,
the instructor included; the instructor can type the passcode on the lab's own machine
(loopback is an address of its own), or restart the lab for a fresh passcode and counts.

    python -c "from pplab.classroom.passcode_tries import TRIES; print(TRIES.wait_left('10.0.0.7'))"
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pplab.limits import (
    MAX_PASSCODE_ADDRESSES,
    MAX_PASSCODE_TRIES,
    MAX_PASSCODE_WAIT_S,
    PASSCODE_FIRST_WAIT_S,
    PASSCODE_LOCKOUT_S,
)

LOOPBACK = "this machine (loopback)"


def wait_after(wrong: int) -> float:
    """Seconds an address waits after its ``wrong``-th wrong try (0 before any)."""
    if wrong <= 0:
        return 0.0
    if wrong < MAX_PASSCODE_TRIES:
        return min(PASSCODE_FIRST_WAIT_S * 2 ** (wrong - 1), MAX_PASSCODE_WAIT_S)
    return min(PASSCODE_LOCKOUT_S * 2 ** min(wrong - MAX_PASSCODE_TRIES, 64), MAX_PASSCODE_WAIT_S)


@dataclass
class _Record:
    wrong: int = 0
    until: float = 0.0  # monotonic time before which this address may not try


def _to_stderr(line: str) -> None:
    print(f"pplab lab: {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


class PasscodeTries:
    """The server's count of wrong passcodes per client address; safe from any thread."""

    def __init__(self, log: Callable[[str], None] = _to_stderr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._log = log
        self._clock = clock

    @staticmethod
    def name(address: object) -> str:
        """A printable key for a client address (None or a non-string: loopback)."""
        return address if isinstance(address, str) and address else LOOPBACK

    def wrong_tries(self, address: object) -> int:
        with self._lock:
            record = self._records.get(self.name(address))
            return record.wrong if record else 0

    def wait_left(self, address: object) -> float:
        """Seconds before ``address`` may try again; 0 when it may now."""
        with self._lock:
            record = self._records.get(self.name(address))
            return max(0.0, record.until - self._clock()) if record else 0.0

    def attempt(self, address: object, check: Callable[[], bool]) -> bool | None:
        """Run ``check`` (the passcode comparison) for ``address`` unless it must wait.

        True: right (the address's count is forgotten). False: wrong (counted, logged, and
        the address waits). None: not checked, because the address must still wait."""
        key = self.name(address)
        with self._lock:
            record = self._records.get(key)
            if record is not None and self._clock() < record.until:
                return None
        right = check()
        with self._lock:
            if right:
                self._records.pop(key, None)
                self._log(f"the instructor's passcode was typed from {key}")
                return True
            record = self._records.pop(key, None) or _Record()
            record.wrong += 1
            wait = wait_after(record.wrong)
            record.until = self._clock() + wait
            self._records[key] = record  # most recent last: the oldest are dropped first
            while len(self._records) > MAX_PASSCODE_ADDRESSES:
                self._records.popitem(last=False)
            self._log(f"wrong passcode from {key}: {record.wrong} wrong from that address, "
                      f"its next try in {wait:g} s")
            return False

    def forget(self) -> None:
        """Forget every count (a test's fresh start; a restarted lab gets one anyway)."""
        with self._lock:
            self._records.clear()


TRIES = PasscodeTries()  # one per server: Streamlit serves every session from this process
