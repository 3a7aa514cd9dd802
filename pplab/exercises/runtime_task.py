"""The runtime lab's task inside the guard: one rank of the learner's pipeline runtime.

``pplab.exercises.runtime_lab`` starts one guarded child per rank (``pplab.exercises.guard``,
policy ``RUNTIME_LAB``: torch loads, pplab and processes and sockets stay out of the
learner's reach). Before the hook goes in, ``prepare`` joins the gloo process group and
builds this rank's stage of pplab's toy GPT in float64 (the task is pplab's own code; the
learner's is not). ``run`` then loads the learner's file and, for each run of the request
(a function of the file and this rank's actions of a schedule), calls
``function(stage, ctx)`` once per training step, with everything it does recorded:

* the stage's forwards (module hooks) and every ``torch.autograd.backward`` call (which
  ``loss.backward()`` and ``out.backward(grad)`` go through), with the values they produced
  or were given, so the parent can say which microbatch each one was;
* ``torch.distributed.send``, ``recv``, ``isend``, ``irecv`` and the ``wait`` of what the
  last two return, with the peer and the values; every wait is bounded by
  ``deadlock_seconds``: a wait that outlasts it is reported with what it waited on (gloo's
  blocking send returns only when the receiver has posted the matching receive, so two ranks
  that both send first wait forever);
* the optimizer's steps, and how many backwards had ended before the first one.

Nothing is judged here: the parent compares what comes back with one process. The first
failure ends the rank's runs (a timed-out gloo pair is closed for good).

    (run by pplab.exercises.runtime_lab: pplab exercise check runtime-lab --file my_runtime.py)
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from pplab.engine.model import lm_loss
from pplab.engine.partition import build_stage
from pplab.engine.train_config import ModelConfig
from pplab.exercises.guard_hook import RESULT_FILE
from pplab.exercises.lab_runner import BoundedText, _where

_HERE: dict = {}  # what prepare built: the stage, its first weights, the request's numbers


class WaitedTooLong(RuntimeError):
    """A send, receive or wait outlasted ``deadlock_seconds``."""


@dataclass
class Context:
    """What the learner's runtime gets besides the stage (see the skeleton's docstring)."""

    rank: int
    world_size: int
    actions: list[tuple[str, int]]
    inputs: list[torch.Tensor] | None
    activation_shape: tuple[int, ...]
    dtype: torch.dtype
    optimizer: torch.optim.Optimizer
    _targets: list[torch.Tensor] | None = None
    _record: Recording | None = None

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.world_size - 1

    def loss(self, output: torch.Tensor, microbatch: int) -> torch.Tensor:
        """Microbatch ``microbatch``'s share of the step's loss (the mean over microbatches)."""
        value = lm_loss(output, self._targets[microbatch]) / len(self._targets)
        self._record.losses.append((microbatch, float(value.detach())))
        self._record.loss_ids[id(value)] = microbatch
        return value


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

    def add(self, kind: str, start: float, peer: int = -1, values=None, mb: int = -1) -> None:
        self.events.append([kind, start, self.now(), peer, mb, self.step, values])


def _values(tensor) -> list | None:
    if not isinstance(tensor, torch.Tensor) or tensor.numel() > 1 << 16:
        return None
    return tensor.detach().reshape(-1).tolist()


def _bounded_wait(work, what: str) -> None:
    seconds = _HERE["deadlock_seconds"]
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
        values = _values(self._tensor) if self._kind == "irecv" else None
        record.add("wait", start, self._peer, values)
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


def _install_recorders() -> None:
    """Put recording versions of the four point-to-point calls and of
    ``torch.autograd.backward`` in place, before the learner's file is loaded (so that a
    ``from torch.distributed import send`` gets them too); each records into the run now
    going (``_HERE["record"]``)."""
    real_isend, real_irecv = dist.isend, dist.irecv
    real_backward = torch.autograd.backward

    def blocking(post, tensor, peer, call: str, tag) -> int:
        record = _HERE["record"]
        _check_tensor(tensor, call)
        peer, start = _check_peer(peer, call if call == "send" else "recv (give it src)",
                                  record), record.now()
        record.pending = f"{call} {'to' if call == 'send' else 'from'} rank {peer}"
        _bounded_wait(post(tensor, peer, tag=tag), record.pending)
        record.pending = None
        record.add(call, start, peer, _values(tensor))
        return peer

    def posted(post, tensor, peer, call: str, tag) -> _Work:
        record = _HERE["record"]
        _check_tensor(tensor, call)
        peer, start = _check_peer(peer, call if call == "isend" else "irecv (give it src)",
                                  record), record.now()
        work = post(tensor, peer, tag=tag)
        record.add(call[1:], start, peer, _values(tensor) if call == "isend" else None)
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
        record = _HERE["record"]
        start, given = record.now(), grad_tensors
        if isinstance(given, list | tuple):
            given = given[0] if given else None
        first = tensors[0] if isinstance(tensors, list | tuple) else tensors
        mb = record.loss_ids.get(id(first), -1)
        result = real_backward(tensors, grad_tensors, *args, **kwargs)
        record.backwards += 1
        record.add("B", start, values=_values(given), mb=mb)
        return result

    for name, recording in (("send", send), ("recv", recv), ("isend", isend),
                            ("irecv", irecv)):
        setattr(dist, name, recording)
    torch.autograd.backward = backward


def _record_compute(stage: torch.nn.Module, record: Recording) -> list:
    """Hooks that record every forward of the stage; the backward is wrapped in ``_run``."""
    started: list[float] = []

    def before(module, args):
        started.append(record.now())

    def after(module, args, output):
        record.add("F", started.pop(), values=_values(output))

    return [stage.register_forward_pre_hook(before), stage.register_forward_hook(after)]


def prepare(request: dict) -> None:
    """Join the process group and build this rank's stage (before the guard's hook)."""
    torch.set_num_threads(1)
    rank, world = request["rank"], request["world_size"]
    store = dist.TCPStore("127.0.0.1", request["port"], world, rank == 0,
                          timeout=datetime.timedelta(seconds=request["startup_seconds"]))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=request["startup_seconds"]))
    config = ModelConfig(**request["model"])
    stage = build_stage(config, request["split"], rank, torch.float64)
    _HERE.update(stage=stage, first=[p.detach().clone() for p in stage.parameters()],
                 deadlock_seconds=request["deadlock_seconds"],
                 names=stage.reference_names())


def _context(request: dict, actions: list, record: Recording) -> Context:
    stage = _HERE["stage"]
    rank, world = request["rank"], request["world_size"]
    tokens = [torch.tensor(t) for t in request["tokens"]] if rank == 0 else None
    targets = ([torch.tensor(t) for t in request["targets"]]
               if rank == world - 1 else None)
    for param, first in zip(stage.parameters(), _HERE["first"], strict=True):
        param.data.copy_(first)
        param.grad = None
    optimizer = torch.optim.SGD(stage.parameters(), lr=request["lr"])
    real_step = optimizer.step

    def step(*args, **kwargs):
        start = record.now()
        if record.backwards_at_first_step is None:
            record.backwards_at_first_step = record.backwards
        record.steps += 1
        result = real_step(*args, **kwargs)
        record.add("optim", start)
        return result

    optimizer.step = step
    return Context(rank, world, [(kind, mb) for kind, mb in actions], tokens,
                   tuple(request["activation_shape"]), torch.float64, optimizer, targets, record)


def _one_run(function, entry: dict, request: dict, path: Path) -> dict:
    stage = _HERE["stage"]
    record = _HERE["record"] = Recording()
    ctx = _context(request, entry["actions"], record)
    hooks = _record_compute(stage, record)
    outcome: dict = {"name": entry["name"]}
    try:
        for step in range(entry["steps"]):
            record.step = step
            ctx.optimizer.zero_grad(set_to_none=True)
            function(stage, ctx)
            if step == 0:  # parity is judged on the first step
                outcome["grads"] = {_HERE["names"][n]: _values(p.grad)
                                    for n, p in stage.named_parameters()}
                outcome["params"] = {_HERE["names"][n]: _values(p)
                                     for n, p in stage.named_parameters()}
    except WaitedTooLong as error:
        outcome["timed_out"] = str(error)
    except NotImplementedError as error:
        todo = f": {str(error)[:300]}" if str(error) else ""
        outcome["error"] = (f"{entry['function']} is not written yet{todo}"
                            f"{_where(error, path)}")
    except BaseException as error:  # SystemExit too: the grader must answer
        outcome["error"] = f"{type(error).__name__}: {str(error)[:300]}{_where(error, path)}"
    finally:
        for hook in hooks:
            hook.remove()
    outcome.update(events=record.events, losses=record.losses,
                   steps=record.steps, backwards=record.backwards,
                   backwards_at_first_step=record.backwards_at_first_step,
                   pending=record.pending, peers=record.peers)
    return outcome


def _stop_after(seconds: float, answer: dict, printed: BoundedText, what: str,
                name: str) -> threading.Timer:
    """A timer that, unless cancelled, answers for the rank (what it did so far, and that
    ``what`` ran past ``seconds``) and ends the process: an endless loop in the learner's
    code costs the grade ``seconds``, not the guard's whole time limit, and the other ranks,
    stuck waiting for this one, are named as its echoes."""

    def expire() -> None:
        record = _HERE["record"]
        run = {"name": name, "error": f"{what} ran longer than {seconds:g} s and was stopped "
                                      f"(an endless loop?)",
               "events": list(record.events), "peers": list(record.peers),
               "pending": record.pending, "steps": record.steps,
               "backwards_at_first_step": record.backwards_at_first_step}
        stopped = (dict(answer, load_error=run["error"]) if name == "load" else
                   dict(answer, runs=[*answer["runs"], run]))
        stopped["printed"] = printed.text()
        with open(RESULT_FILE, "w") as result:
            json.dump(stopped, result)
        os._exit(0)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def run(path: Path, request: dict) -> dict:
    """Every run of ``request["runs"]`` until the first that fails on this rank:
    ``{"runs": [outcome, ...], "printed": text}``, or a ``load_error``."""
    printed = BoundedText(request["max_printed_chars"])
    sys.stdout = sys.stderr = printed
    answer: dict = {"runs": []}
    _HERE["record"] = Recording()
    _install_recorders()
    seconds = request["run_seconds"]
    timer = _stop_after(seconds, answer, printed, f"loading {path.name}", "load")
    try:
        spec = importlib.util.spec_from_file_location("learner_runtime", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    except BaseException as error:  # anything the file does at import time is its own fault
        answer["load_error"] = f"{type(error).__name__}: {str(error)[:300]}{_where(error, path)}"
        answer["printed"] = printed.text()
        return answer
    finally:
        timer.cancel()
    for entry in request["runs"]:
        function = getattr(module, entry["function"], None)
        if not callable(function):
            answer["runs"].append({"name": entry["name"], "error": f"{path.name} defines no "
                                   f"function {entry['function']}(stage, ctx)"})
            break
        timer = _stop_after(seconds * entry["steps"], answer, printed, entry["function"],
                            entry["name"])
        outcome = _one_run(function, entry, request, path)
        timer.cancel()
        answer["runs"].append(outcome)
        if "error" in outcome or "timed_out" in outcome:
            break
    answer["printed"] = printed.text()
    return answer
