"""How a rank talks to the parent that watches it: whole frames on a pipe of its own.

What it teaches: a parent that waits on its children must never block on one of them. Each
rank gets its own pipe. It writes frames (a kind byte, a length, the pickled body) and
nothing else; the parent reads whatever bytes are there, never more, and counts a message
only once its frame is complete. So a rank that dies or is stopped halfway through a message
(say, its large end-of-run result) leaves an incomplete frame in a buffer, never a parent
stuck in a read: the parent goes on checking that every rank is alive. A multiprocessing
Queue cannot promise that: its reader blocks until a message it has begun to read is whole.

Besides its reports, its result and its error, a rank sends a heartbeat every second from a
thread of its own. A rank waiting in a receive still beats; a rank stopped by SIGSTOP (or a
debugger, or frozen) does not, which is how the parent tells the culprit from the peers that
were waiting for it. The same thread ends the rank when its parent is gone. ``rank_main`` is
what every spawned rank runs: join the process group, run the work, answer.

    python -c "from pplab.engine.rank_channel import HEARTBEAT_SECONDS; print(HEARTBEAT_SECONDS)"
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

from pplab.engine import rendezvous

HEARTBEAT_SECONDS = 1.0
STARTUP_SECONDS = 120.0  # loading Python and torch, and meeting the others, on a busy machine
ERROR_CHARS = 400  # an error travels as one line, cut to this length
READ_LIMIT = 64 * 2**20  # bytes taken from one rank per look, so none can starve the others

# Frame kinds. A result travels as the rank's own pickle, so the parent unpickles it once.
BEAT, REPORT, RESULT, ERROR = b"h", b"r", b"R", b"e"
_HEADER = struct.Struct("!cQ")


class Outbox:
    """The rank's end of its pipe: whole frames, one writer at a time (the main thread and
    the heartbeat thread share it)."""

    def __init__(self, connection) -> None:
        self._connection = connection  # held, so its file descriptor stays open
        self._fd = connection.fileno()
        self._lock = threading.Lock()

    def send(self, kind: bytes, body: object) -> None:
        data = body if kind == RESULT else pickle.dumps(body)
        with self._lock:
            for part in (_HEADER.pack(kind, len(data)), data):
                view = memoryview(part)
                while view:
                    view = view[os.write(self._fd, view):]

    def send_quietly(self, kind: bytes, body: object) -> None:
        """Send if the parent is still listening; a rank on its way out ignores the rest."""
        try:
            self.send(kind, body)
        except (OSError, ValueError, pickle.PicklingError):
            pass

    def start_heartbeat(self) -> None:
        """Beat every ``HEARTBEAT_SECONDS``; exit the process once the parent is gone."""
        parent = os.getppid()

        def beat() -> None:
            while os.getppid() == parent:
                try:
                    self.send(BEAT, None)
                except OSError:  # the parent closed its end
                    break
                time.sleep(HEARTBEAT_SECONDS)
            os._exit(1)  # a parent killed outright cannot stop us: do not wait for a timeout

        threading.Thread(target=beat, name="pplab-heartbeat", daemon=True).start()


class Inbox:
    """The parent's end of one rank's pipe, read without ever waiting."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.closed = False  # the rank's end is closed: everything it wrote has been read
        self.result_bytes: int | None = None  # size of a result frame still arriving
        self._buffer = bytearray()
        os.set_blocking(connection.fileno(), False)

    def read(self) -> list[tuple[bytes, object]]:
        """The complete messages that have arrived, as (kind, body).

        Stops early, after a ("result-begins", size) entry, when a result frame starts to
        arrive: the caller hears of it while the rank is still sending.
        """
        messages: list[tuple[bytes, object]] = []
        budget = READ_LIMIT
        while budget > 0 and not self.closed:
            try:
                chunk = os.read(self.connection.fileno(), min(budget, 2**20))
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            budget -= len(chunk)
            self._buffer += chunk
            began = self.result_bytes is None
            messages += self._frames()
            if began and self.result_bytes is not None:
                messages.append((b"result-begins", self.result_bytes))
                break
        return messages

    def _frames(self) -> list[tuple[bytes, object]]:
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                self.result_bytes = size if kind == RESULT else None
                break
            data = bytes(self._buffer[_HEADER.size:end])
            del self._buffer[:end]
            self.result_bytes = None
            frames.append((kind, data if kind == RESULT else pickle.loads(data)))
        return frames

    def close(self) -> None:
        self.connection.close()


def describe_error(error: BaseException) -> str:
    """``TypeName: first line of the message``: one line, whatever the error."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 1] + "…"


def rank_main(rank: int, world_size: int, backend: str | None, folder: str, timeout: float,
              fn: Callable, pipe) -> None:
    """Entry point of a spawned rank: join, run ``fn``, answer; never leave a traceback."""
    outbox = Outbox(pipe)
    outbox.start_heartbeat()

    def report(event: str, **fields) -> None:
        outbox.send(REPORT, (event, fields))

    dist = None
    try:
        args = rendezvous.read_args(Path(folder))
        if backend is not None:
            import torch
            import torch.distributed as dist

            torch.set_num_threads(1)  # one rank per core: threads would fight over them
        report("started", pid=os.getpid())
        if dist is not None:
            # torch's own timeout must outlast the parent's patience: the parent, which sees
            # every rank, decides who failed; a peer's "timed out" would only be an echo.
            dist.init_process_group(backend, init_method=rendezvous.init_method(Path(folder)),
                                    rank=rank, world_size=world_size,
                                    timeout=timedelta(seconds=max(timeout, STARTUP_SECONDS)))
        report("joined")
        # Pickled here: a torch queue would share tensors by file descriptor, and those die
        # with this process.
        payload = pickle.dumps(fn(rank, world_size, report, *args))
        if dist is not None:
            dist.barrier()  # nobody leaves while a peer may still be talking to it
        outbox.send(RESULT, payload)
    except BaseException as error:  # report any failure, then exit non-zero
        outbox.send_quietly(ERROR, (time.time(), describe_error(error)))
        os._exit(1)
    if dist is not None:
        # The run has this rank's result: a failure while tearing down is not the run's.
        with suppress(BaseException):
            dist.destroy_process_group()
