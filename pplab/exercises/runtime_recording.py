"""What a rank of the runtime lab records: every message, wait, compute and optimizer step.

``pplab.exercises.runtime_task`` (the guarded child of one rank) installs these recorders
before the learner's file is loaded, so ``from torch.distributed import send`` gets them
too: the four point-to-point calls, the ``wait`` of what ``isend`` and ``irecv`` return,
``torch.autograd.backward`` (which ``loss.backward()`` and ``out.backward(grad)`` go
through) and the stage's forwards. Each records into the run now going
(``CURRENT["record"]``); every wait is bounded by ``CURRENT["deadlock_seconds"]``. Like the
task, this module runs only in that child, never in pplab's own process.

    (used by pplab.exercises.runtime_task)
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

CURRENT: dict = {}  # "record": the Recording of the run now going; "deadlock_seconds"


class WaitedTooLong(RuntimeError):
    """A send, receive or wait outlasted ``deadlock_seconds``."""




@dataclass
class Recording:
    """Everything one run did, in ``time.perf_counter`` seconds: one clock for every process
    of the machine (CLOCK_MONOTONIC), so the parent can put the ranks on one axis."""

    events: list[list] = field(default_factory=list)  # [kind, start, end, peer, mb, step, values]
    losses: list[tuple[int, float]] = field(default_factory=list)  # (microbatch, value)
    loss_ids: dict[int, int] = field(default_factory=dict)  # id of a live loss -> microbatch
    pending: str | None = None  # what the rank waits on now
    peers: list[tuple[str, int]] = field(default_factory=list)  # (call, rank) it tried
    backwards: int = 0
    steps: int = 0
    backwards_at_first_step: int | None = None
    step: int = 0  # the training step being run

    def now(self) -> float:
        return time.perf_counter()

    def add(self, kind: str, start: float, peer: int = -1, tensor=None, mb: int = -1) -> None:
        """One event, ended now. The values of ``tensor`` (what the parent recognises a
        microbatch by) are copied out of the first step only, the one the parent judges, and
        after the end is read: the timeline's steps carry no copying in their spans."""
        end = self.now()
        values = values_of(tensor) if self.step == 0 else None
        self.events.append([kind, start, end, peer, mb, self.step, values])


def values_of(tensor) -> list | None:
    if not isinstance(tensor, torch.Tensor) or tensor.numel() > 1 << 16:
        return None
    return tensor.detach().reshape(-1).tolist()


def _bounded_wait(work, what: str) -> None:
    seconds = CURRENT["deadlock_seconds"]
    try:
        work.wait(timeout=datetime.timedelta(seconds=seconds))
    except RuntimeError as error:
        if "imed out" in str(error) or "timeout" in str(error).lower():
            raise WaitedTooLong(f"waited {seconds:g} s in {what}") from None
        raise


class _Work:
    """What the recorded isend and irecv return: the same ``wait`` and ``is_completed``."""

    def __init__(self, work, kind: str, peer: int, tensor: torch.Tensor, record: Recording):
        self._work, self._kind, self._peer, self._tensor = work, kind, peer, tensor
        self._record, self._done = record, False

    def is_completed(self) -> bool:
        return self._work.is_completed()

    def wait(self, timeout=None) -> bool:
        if self._done:
            return True
        record, start = self._record, self._record.now()
        record.pending = f"wait for its {self._kind} {'to' if self._kind == 'isend' else 'from'}" \
                         f" rank {self._peer}"
        _bounded_wait(self._work, record.pending)
        record.pending, self._done = None, True
        record.add("wait", start, self._peer, self._tensor if self._kind == "irecv" else None)
        return True


def _check_tensor(tensor, what: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        hint = (" (x.grad of a received input stays None unless you call x.requires_grad_() "
                "before the forward)" if tensor is None else "")
        raise TypeError(f"{what} of {type(tensor).__name__}, not a tensor{hint}")


def _check_peer(peer, what: str, record: Recording) -> int:
    if isinstance(peer, int) and (what.split()[0], peer) not in record.peers:
        record.peers.append((what.split()[0], peer))
    if not isinstance(peer, int) or not 0 <= peer < dist.get_world_size():
        raise ValueError(f"{what} needs a rank 0..{dist.get_world_size() - 1}, got {peer!r}")
    return peer


def install_recorders() -> None:
    """Put recording versions of the four point-to-point calls and of
    ``torch.autograd.backward`` in place, before the learner's file is loaded (so that a
    ``from torch.distributed import send`` gets them too); each records into the run now
    going (``CURRENT["record"]``)."""
    real_isend, real_irecv = dist.isend, dist.irecv
    real_backward = torch.autograd.backward

    def blocking(post, tensor, peer, call: str, tag) -> int:
        record = CURRENT["record"]
        _check_tensor(tensor, call)
        peer, start = _check_peer(peer, call if call == "send" else "recv (give it src)",
                                  record), record.now()
        record.pending = f"{call} {'to' if call == 'send' else 'from'} rank {peer}"
        _bounded_wait(post(tensor, peer, tag=tag), record.pending)
        record.pending = None
        record.add(call, start, peer, tensor)
        return peer

    def posted(post, tensor, peer, call: str, tag) -> _Work:
        record = CURRENT["record"]
        _check_tensor(tensor, call)
        peer, start = _check_peer(peer, call if call == "isend" else "irecv (give it src)",
                                  record), record.now()
        work = post(tensor, peer, tag=tag)
        record.add(call[1:], start, peer, tensor if call == "isend" else None)
        return _Work(work, call, peer, tensor, record)

    def send(tensor, dst=None, group=None, tag=0, group_dst=None):
        blocking(real_isend, tensor, dst, "send", tag)

    def recv(tensor, src=None, group=None, tag=0, group_src=None):
        return blocking(real_irecv, tensor, src, "recv", tag)

    def isend(tensor, dst=None, group=None, tag=0, group_dst=None):
        return posted(real_isend, tensor, dst, "isend", tag)

    def irecv(tensor, src=None, group=None, tag=0, group_src=None):
        return posted(real_irecv, tensor, src, "irecv", tag)

    def backward(tensors, grad_tensors=None, *args, **kwargs):
        record = CURRENT["record"]
        start, given = record.now(), grad_tensors
        if isinstance(given, list | tuple):
            given = given[0] if given else None
        first = tensors[0] if isinstance(tensors, list | tuple) else tensors
        mb = record.loss_ids.get(id(first), -1)
        result = real_backward(tensors, grad_tensors, *args, **kwargs)
        record.backwards += 1
        record.add("B", start, tensor=given, mb=mb)
        return result

    for name, recording in (("send", send), ("recv", recv), ("isend", isend),
                            ("irecv", irecv)):
        setattr(dist, name, recording)
    torch.autograd.backward = backward


def record_compute(stage: torch.nn.Module, record: Recording) -> list:
    """Hooks that record every forward of the stage; the backward is wrapped in ``_run``."""
    started: list[float] = []

    def before(module, args):
        started.append(record.now())

    def after(module, args, output):
        record.add("F", started.pop(), tensor=output)

    return [stage.register_forward_pre_hook(before), stage.register_forward_hook(after)]
