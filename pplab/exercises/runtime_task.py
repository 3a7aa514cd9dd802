"""The runtime lab's task inside the guard: one rank of the learner's pipeline runtime.

``pplab.exercises.runtime_lab`` starts one guarded child per rank (``pplab.exercises.guard``,
policy ``RUNTIME_LAB``: torch loads, pplab and processes and sockets stay out of the
learner's reach). Before the hook goes in, ``prepare`` joins the gloo process group and
builds this rank's stage of pplab's toy GPT in float64 (the task is pplab's own code; the
learner's is not). ``run`` then loads the learner's file and, for each run of the request
(a function of the file and this rank's actions of a schedule), calls
``function(stage, ctx)`` once per training step, with everything it does recorded
(``pplab.exercises.runtime_recording``):

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
import linecache
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from pplab.engine.model import lm_loss
from pplab.engine.partition import build_stage
from pplab.engine.train_config import ModelConfig


def _sibling(name: str):
    """A module of this folder loaded from its file, not through ``pplab.exercises`` (whose
    ``__init__`` registers every exercise: none of them belongs in the learner's process)."""
    spec = importlib.util.spec_from_file_location(f"pplab_guarded_{name}",
                                                  Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass in it looks its module up there
    spec.loader.exec_module(module)
    linecache.getlines(spec.origin)  # a warning may show its lines once reading pplab is refused
    return module


_runner, _recording = _sibling("lab_runner"), _sibling("runtime_recording")
BoundedText, _where = _runner.BoundedText, _runner._where
CURRENT, Recording, WaitedTooLong = _recording.CURRENT, _recording.Recording, \
    _recording.WaitedTooLong
install_recorders, record_compute = _recording.install_recorders, _recording.record_compute
values_of = _recording.values_of

_HERE: dict = {}  # what prepare built: the stage, its first weights, the request's numbers


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
    CURRENT["deadlock_seconds"] = request["deadlock_seconds"]
    _HERE.update(stage=stage, first=[p.detach().clone() for p in stage.parameters()],
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
    record = CURRENT["record"] = Recording()
    ctx = _context(request, entry["actions"], record)
    hooks = record_compute(stage, record)
    outcome: dict = {"name": entry["name"]}
    try:
        for step in range(entry["steps"]):
            record.step = step
            ctx.optimizer.zero_grad(set_to_none=True)
            function(stage, ctx)
            if step == 0:  # parity is judged on the first step
                outcome["grads"] = {_HERE["names"][n]: values_of(p.grad)
                                    for n, p in stage.named_parameters()}
                outcome["params"] = {_HERE["names"][n]: values_of(p)
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
        record = CURRENT["record"]
        run = {"name": name, "error": f"{what} ran longer than {seconds:g} s and was stopped "
                                      f"(an endless loop?)",
               "events": list(record.events), "peers": list(record.peers),
               "pending": record.pending, "steps": record.steps,
               "backwards_at_first_step": record.backwards_at_first_step}
        stopped = (dict(answer, load_error=run["error"]) if name == "load" else
                   dict(answer, runs=[*answer["runs"], run]))
        stopped["printed"] = printed.text()
        with open(_HERE["result_file"], "w") as result:  # where the guard reads the answer
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
    CURRENT["record"] = Recording()
    install_recorders()
    seconds = request["run_seconds"]
    _HERE["result_file"] = request["result_file"]
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
