"""Recording what every rank really did, on one clock shared by all ranks.

What it teaches: a measured timeline is only as good as its clock. Ranks on one host read
the same CLOCK_MONOTONIC through ``time.perf_counter_ns``, so after a barrier rank 0 picks the
origin and broadcasts it; every event is then "seconds since the origin" on every rank. Ranks
on other hosts estimate their offset to rank 0 with ping-pongs (``clock_offset_ns`` in
comms.py, the NTP estimate: offset = remote - midpoint of the round trip, keeping the
shortest round trip). GPU work is timed with CUDA events, converted to the same clock through
a reference event recorded at a known host time. (With NCCL, ``wait`` only makes the GPU
stream wait, so on a GPU the time blocked shows as a later start of the next kernel rather
than as a long ``wait`` row.)

    pplab train --schedule gpipe --pp 2 --microbatches 4 --steps 2
"""

from __future__ import annotations

import time

from pplab.timeline.events import COMPUTE_EVENT_KINDS, EventKind
from pplab.topology import Coords

_now = time.perf_counter_ns


class _Span:
    __slots__ = ("recorder", "row", "cuda_start")

    def __init__(self, recorder: Recorder, row: list) -> None:
        self.recorder = recorder
        self.row = row
        self.cuda_start = None

    def __enter__(self) -> _Span:
        recorder = self.recorder
        if recorder.cuda is not None and self.row[0] in COMPUTE_EVENT_KINDS:
            self.cuda_start = recorder.cuda.Event(enable_timing=True)
            self.cuda_start.record()
        self.row[4] = _now()
        return self

    def __exit__(self, *exc) -> None:
        recorder = self.recorder
        self.row[5] = _now()
        if self.cuda_start is not None:
            end = recorder.cuda.Event(enable_timing=True)
            end.record()
            recorder.cuda_pairs.append((self.row, self.cuda_start, end))
        recorder.rows.append(self.row)


class _NoSpan:
    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc) -> None:
        return None


_NO_SPAN = _NoSpan()


class Recorder:
    """Collects event rows for one rank; ``span(...)`` times one thing, a no-op when disabled.

    Rows hold raw nanoseconds; ``rows_for_timeline`` converts them to seconds since the
    origin on the shared clock, with ``offset_ns`` added for ranks on another host. Every
    row names the global ``rank`` and its ``coords`` in the Topology (by default a pipeline
    rank with no tensor or data parallelism: pp = rank).
    """

    def __init__(self, rank: int, enabled: bool = True, cuda=None,
                 coords: Coords | None = None) -> None:
        self.rank = rank
        self.coords = coords if coords is not None else Coords(pp=rank, dp=0, tp=0)
        self.enabled = enabled
        self.step = 0
        self.origin_ns = _now()
        self.offset_ns = 0
        self.rows: list[list] = []
        self.cuda = cuda  # the torch.cuda module when timing GPU work, else None
        self.cuda_pairs: list = []
        self.cuda_reference = None

    def set_origin(self, origin_ns: int, offset_ns: int = 0) -> None:
        self.origin_ns = origin_ns
        self.offset_ns = offset_ns
        if self.cuda is not None:
            self.cuda.synchronize()
            self.cuda_reference = (self.cuda.Event(enable_timing=True), _now())
            self.cuda_reference[0].record()

    def span(self, kind: EventKind, *, stage: int = -1, microbatch: int = -1, peer: int = -1,
             bytes: int = 0, detail: str = "", version: int = -1):
        if not self.enabled:
            return _NO_SPAN
        return _Span(self, [kind, stage, microbatch, self.step, 0, 0, version, peer, bytes,
                            detail])

    def _apply_cuda_times(self) -> None:
        if not self.cuda_pairs or self.cuda_reference is None:
            return
        self.cuda.synchronize()
        reference, reference_ns = self.cuda_reference
        for row, start, end in self.cuda_pairs:
            row[4] = reference_ns + int(reference.elapsed_time(start) * 1e6)
            row[5] = reference_ns + int(reference.elapsed_time(end) * 1e6)
        self.cuda_pairs.clear()

    def rows_for_timeline(self) -> list[dict]:
        self._apply_cuda_times()
        shift = self.offset_ns - self.origin_ns
        pp, dp, tp = self.coords
        return [
            {"rank": self.rank, "pp_rank": pp, "tp_rank": tp, "dp_rank": dp, "kind": kind,
             "stage": stage, "microbatch": mb, "step": step,
             "start": (start + shift) / 1e9, "end": (end + shift) / 1e9, "source": "measured",
             "version": version, "peer": peer, "bytes": nbytes, "detail": detail}
            for kind, stage, mb, step, start, end, version, peer, nbytes, detail in self.rows
        ]
