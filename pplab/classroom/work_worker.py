"""One worker process of the lab's work pool: read a call, run it, send its answer back.

The server (``pplab.classroom.work_pool``) writes one framed pickle per request on this
process's standard input: ``(module, function name, args, kwargs)``, where the module is one
of pplab's; the answer goes back framed on standard output as ``("ok", value)`` or
``("error", exception)``. The process lowers its priority and bounds its memory before it
takes any request, and imports the heavy modules up front so the first request does not pay
for them. It runs pplab's own functions on a learner's numbers and text, never a learner's
code, and is killed by the server when a request's deadline passes or its page goes away.

    python -m pplab.classroom.work_worker      # speaks only the framed protocol on stdin/stdout
"""

from __future__ import annotations

import importlib
import os
import pickle
import struct
import sys
from typing import BinaryIO

from pplab.limits import MAX_WORK_ANSWER_BYTES, MAX_WORK_MEMORY_BYTES, WORK_NICENESS

HEADER = struct.Struct("!Q")
PRELOAD = ("pplab.sim.simulator", "pplab.sim.search", "pplab.planner", "pplab.timeline",
           "pplab.classroom.page_work")


def read_frame(stream: BinaryIO, limit: int) -> bytes | None:
    """One framed message, or None at the end of the stream; ValueError above ``limit``."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    size = HEADER.unpack(header)[0]
    if size > limit:
        raise ValueError(f"a message of {size:,} bytes is over the limit of {limit:,}")
    data = stream.read(size)
    return data if len(data) == size else None


def write_frame(stream: BinaryIO, data: bytes) -> None:
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives a pickle round trip, else a plain one with its message (a
    ValueError stays a ValueError: the page shows it as the user's mistake)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # an exception whose __init__ takes other arguments than its message
        kind = ValueError if isinstance(error, ValueError) else RuntimeError
        return kind(str(error))


def answer(request: bytes) -> bytes:
    module, name, args, kwargs = pickle.loads(request)
    try:
        if module != "pplab" and not module.startswith("pplab."):
            raise ValueError(f"the work pool runs pplab's functions only, not {module}.{name}")
        value = getattr(importlib.import_module(module), name)(*args, **kwargs)
        reply = pickle.dumps(("ok", value), protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        reply = pickle.dumps(("error", MemoryError("the request needs more memory than a "
                                                    "worker of the lab may hold")))
    except Exception as error:
        reply = pickle.dumps(("error", _portable(error)))
    if len(reply) > MAX_WORK_ANSWER_BYTES:
        reply = pickle.dumps(("error", ValueError(
            f"the answer is {len(reply):,} bytes, over the lab's {MAX_WORK_ANSWER_BYTES:,}")))
    return reply


def _bound_myself() -> None:
    try:
        os.nice(WORK_NICENESS)
    except (AttributeError, OSError):
        pass
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    value = MAX_WORK_MEMORY_BYTES if hard == resource.RLIM_INFINITY else \
        min(MAX_WORK_MEMORY_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_AS, (value, hard))


def main() -> int:
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
    _bound_myself()
    for module in PRELOAD:
        importlib.import_module(module)
    while True:
        request = read_frame(requests, MAX_WORK_ANSWER_BYTES)
        if request is None:
            return 0
        write_frame(replies, answer(request))


if __name__ == "__main__":
    sys.exit(main())
