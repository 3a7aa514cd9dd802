"""Point-to-point messages between pipeline stages, and the clock shared by all ranks.

What it teaches: a pipeline only ever sends two things, an activation forward (stage s to
s+1) and its gradient backward (s+1 to s), each of shape (microbatch, seq_len, d_model), so
the receiver knows the shape in advance. Sends are posted with ``isend`` and never block the
sender; the receive an action needs is posted with ``irecv`` one action ahead, so the
transfer overlaps the current computation (and the step's later ones while the rank is
blocked anyway), and waited on right before the action: the time spent waiting is the
bubble a learner sees. Every request is waited on: a receive right
before the action that needs it, the sends at the end of the step. Sends that have already
completed are let go earlier, once more than ``MAX_PENDING_SENDS`` are held, without ever
blocking mid-step: a gloo send may complete only when its receiver asks for it, and a
schedule may legally receive in another order than its peer sends. A tag names (stage,
kind, microbatch) so no two messages can be confused.

On gloo, messages to a higher global rank and messages to a lower one travel in two
process groups of their own (``direction_groups``), so no connection ever carries a
message each way at once. Two ranks that send to each other within some 30 microseconds on
one connection both stayed inside ``isend`` for 1.5 to 4 ms on this 2-core machine
(measured in interleaved-1f1b, p=2 m=4 at ``pplab train``'s default sizes: 78 such sends
in 40 steps, median 2.8 ms, against 0.08 ms for every other send; and reproduced by two
processes crossing 16 KiB sends: 14-22 of 380 over 1 ms on one group, none over 0.2 ms with
a group per direction).

    pplab train --schedule 1f1b --pp 2 --microbatches 4 --steps 2
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.distributed as dist

from pplab.engine.recorder import Recorder
from pplab.limits import MAX_PENDING_SENDS
from pplab.timeline.events import EventKind

ACTIVATION, GRADIENT = 0, 1
_DETAIL = {ACTIVATION: "activation", GRADIENT: "gradient"}


def direction_groups(backend: str) -> tuple | None:
    """Two gloo groups of every rank, one for messages to a higher rank and one for messages
    to a lower (see the module's docstring); None on other backends, whose sends were never
    seen to stall so. Every rank must call it, at the same point, as ``new_group`` requires."""
    if backend != "gloo":
        return None
    everyone = list(range(dist.get_world_size()))
    return dist.new_group(everyone, backend="gloo"), dist.new_group(everyone, backend="gloo")


class PipeComms:
    """Sends and receives of one rank; ``global_rank(r)`` maps a schedule rank to a process."""

    def __init__(self, recorder: Recorder, global_rank: Callable[[int], int], num_stages: int,
                 shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                 through_host: bool = False, directions: tuple | None = None) -> None:
        self.recorder = recorder
        self.global_rank = global_rank
        self.me = dist.get_rank()
        self.num_stages = num_stages
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.through_host = through_host
        self.directions = directions  # (to a higher rank, to a lower one), or None: the world
        self.pending: list[tuple[dist.Work, torch.Tensor]] = []
        self.bytes_per_link: dict[str, int] = defaultdict(int)

    def _tag(self, stage: int, kind: int, microbatch: int) -> int:
        return (microbatch * self.num_stages + stage) * 2 + kind

    def _group(self, sender: int, receiver: int):
        """The process group a message from global rank ``sender`` to ``receiver`` uses."""
        if self.directions is None:
            return None
        upward, downward = self.directions
        return upward if receiver > sender else downward

    def send(self, tensor: torch.Tensor, to_rank: int, stage: int, kind: int,
             microbatch: int) -> None:
        peer = self.global_rank(to_rank)
        tensor = tensor.contiguous()
        if self.through_host:
            tensor = tensor.cpu()
        nbytes = tensor.numel() * tensor.element_size()
        with self.recorder.span(EventKind.SEND, stage=stage, microbatch=microbatch, peer=peer,
                                bytes=nbytes, detail=_DETAIL[kind]):
            work = dist.isend(tensor, peer, group=self._group(self.me, peer),
                              tag=self._tag(stage, kind, microbatch))
        self.pending.append((work, tensor))
        self.bytes_per_link[f"{self.me}->{peer}"] += nbytes
        if len(self.pending) > MAX_PENDING_SENDS:
            self.pending = [(w, t) for w, t in self.pending if not w.is_completed()]

    def post_recv(self, from_rank: int, stage: int, kind: int, microbatch: int):
        """Post a receive of what ``stage`` (the sender's) produced; wait on it later."""
        peer = self.global_rank(from_rank)
        device = torch.device("cpu") if self.through_host else self.device
        buffer = torch.empty(self.shape, dtype=self.dtype, device=device)
        nbytes = buffer.numel() * buffer.element_size()
        with self.recorder.span(EventKind.RECV, stage=stage, microbatch=microbatch, peer=peer,
                                bytes=nbytes, detail=_DETAIL[kind]):
            work = dist.irecv(buffer, peer, group=self._group(peer, self.me),
                              tag=self._tag(stage, kind, microbatch))
        return work, buffer, stage, kind, microbatch, peer

    def wait_recv(self, posted, while_blocked: Callable[[], None] | None = None) -> torch.Tensor:
        """Block until a posted receive has landed: the time blocked is the bubble.

        ``while_blocked`` runs first when the message has not landed yet: work that would
        otherwise cost step time (posting later receives) done while the rank waits anyway,
        inside the wait it shortens.
        """
        work, buffer, stage, kind, microbatch, peer = posted
        with self.recorder.span(EventKind.WAIT, stage=stage, microbatch=microbatch, peer=peer,
                                detail=_DETAIL[kind]):
            if while_blocked is not None and not work.is_completed():
                while_blocked()
            work.wait()
        return buffer.to(self.device) if self.through_host else buffer

    def recv(self, from_rank: int, stage: int, kind: int, microbatch: int) -> torch.Tensor:
        return self.wait_recv(self.post_recv(from_rank, stage, kind, microbatch))

    def drain(self) -> None:
        """Wait for every send still in flight: the end of a step leaves nothing behind."""
        if not self.pending:
            return
        with self.recorder.span(EventKind.WAIT, detail="sends"):
            for work, _ in self.pending:
                work.wait()
            self.pending.clear()


def clock_offset_ns(device: torch.device | None = None, rounds: int = 8) -> int:
    """This rank's clock minus rank 0's, in ns, estimated from ping-pongs with rank 0.

    NTP's estimate (Mills, RFC 5905): with t0 and t1 the local send and receive times of a
    round trip and r the remote time stamped in between, rank 0 is ahead by r - (t0 + t1) / 2;
    this returns the negation, (t0 + t1) / 2 - r, taken from the shortest round trip since its
    error is bounded by half its length. Ranks that share rank 0's host need none of this; the
    caller only uses it across hosts.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    stamp = torch.zeros(1, dtype=torch.int64, device=device)
    best_round_trip, best_offset = None, 0
    for peer in range(1, world):
        for _ in range(rounds):
            if rank == 0:
                dist.recv(stamp, peer)
                stamp[0] = time.perf_counter_ns()
                dist.send(stamp, peer)
            elif rank == peer:
                t0 = time.perf_counter_ns()
                dist.send(stamp, 0)
                dist.recv(stamp, 0)
                t1 = time.perf_counter_ns()
                if best_round_trip is None or t1 - t0 < best_round_trip:
                    best_round_trip = t1 - t0
                    best_offset = (t0 + t1) // 2 - int(stamp[0])
    return best_offset
