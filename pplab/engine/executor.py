"""The one executor loop: run any valid schedule on real processes.

What it teaches: a schedule is just each rank's ordered list of actions. The loop takes the
next action, gets what it needs (``pplab.schedules.needs``: from its own stages if they live
here, else a receive from the rank that holds them, posted one action ahead so the transfer
overlaps the current computation), computes, and hands the result on.
Nothing here knows GPipe from 1F1B from zero-bubble: a new schedule never touches this file.

Synchronous schedules accumulate the gradients of all microbatches and step the optimizer
once after the flush (after averaging across data-parallel replicas when there are any).
Asynchronous ones (PipeDream, PipeDream-2BW) run their whole multi-step schedule in one go
and update a stage after every ``update_every`` of its backwards, with weight stashing.

    pplab train --schedule interleaved-1f1b --pp 2 --chunks 2 --microbatches 4 --steps 3
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pplab.schedules import BACKWARD_INPUT, BACKWARD_WEIGHT, FORWARD, Schedule, needs
from pplab.train_config import Fault

from .comms import ACTIVATION, GRADIENT, PipeComms
from .recorder import Recorder
from .stage import StageRuntime

Batch = list[tuple[torch.Tensor, torch.Tensor]]


class InjectedFault(RuntimeError):
    """Raised on purpose by ``--fault`` to show how a failed rank brings the run down."""


@dataclass
class ExecutorHooks:
    """Where the rest of a run plugs into the loop; every hook is optional.

    ``after_flush(runtime)`` runs before each synchronous optimizer step (data-parallel
    gradient averaging plugs in there); ``before_optim(step, runtimes)`` then sees the
    accumulated gradients (the parity tests read them there); ``on_loss(step, loss)`` gets
    each step's mean loss on the last stage; ``on_step(step)`` is called as this rank
    begins a step (the supervisor's measure of progress).
    """

    after_flush: Callable[[StageRuntime], None] | None = None
    before_optim: Callable[[int, dict[int, StageRuntime]], None] | None = None
    on_loss: Callable[[int, float], None] | None = None
    on_step: Callable[[int], None] | None = None


class Executor:
    """Runs ``schedule.actions[pp_rank]`` with the stages this process holds.

    ``pp_rank`` is the process's place in its pipeline (the schedule's rank), not its global
    rank: with tensor or data parallelism several processes share one ``pp_rank``.
    ``batch_for_step(step)`` returns this replica's microbatches of that training step.
    ``fault``, when given, is this process's own (``--fault`` named its global rank).
    """

    def __init__(self, schedule: Schedule, pp_rank: int, runtimes: dict[int, StageRuntime],
                 comms: PipeComms, recorder: Recorder, batch_for_step: Callable[[int], Batch],
                 hooks: ExecutorHooks | None = None, fault: Fault | None = None) -> None:
        self.schedule = schedule
        self.pp_rank = pp_rank
        self.runtimes = runtimes
        self.comms = comms
        self.recorder = recorder
        self.batch_for_step = batch_for_step
        self.hooks = hooks or ExecutorHooks()
        self.fault = fault
        self.step_losses: dict[int, float] = {}
        self.local: dict[tuple[int, int, int], torch.Tensor] = {}
        self.posted: dict[tuple[int, int, int], tuple] = {}
        self._batches: dict[int, Batch] = {}
        self.first_step = 0  # a synchronous schedule covers one step; it is rerun per step
        self.versions: dict[tuple[str, int, int], int] = {}

    def _microbatch(self, mb: int) -> tuple[torch.Tensor, torch.Tensor]:
        per_step = self.schedule.microbatches_per_step
        step = self.first_step + mb // per_step
        if step not in self._batches:
            self._batches = {step: self.batch_for_step(step)}
        return self._batches[step][mb % per_step]

    def _from_other_stage(self, action) -> tuple[int, int, int] | None:
        """(sender stage, message kind, microbatch) that ``action`` needs from another stage.

        Read off ``needs``: a forward needs the previous stage's activation, a backward (B or
        I) the next stage's input gradient; a W needs only its own stage's I.
        """
        for stage, kind, mb in needs(action, self.schedule.num_stages):
            if stage != action.stage:
                return stage, ACTIVATION if kind == FORWARD else GRADIENT, mb
        return None

    def _remote_input(self, action) -> tuple[int, int, int] | None:
        key = self._from_other_stage(action)
        if key is None or self.schedule.stage_to_rank[key[0]] == self.pp_rank:
            return None  # nothing to receive, or handed over locally
        return key

    def prefetch(self, action) -> None:
        """Post the receive ``action`` will need, so it arrives while this rank computes."""
        key = self._remote_input(action)
        if key is not None and key not in self.posted:
            self.posted[key] = self.comms.post_recv(self.schedule.stage_to_rank[key[0]], *key)

    def _get(self, action) -> torch.Tensor | None:
        """What ``action`` needs from another stage: handed over locally, or received."""
        key = self._from_other_stage(action)
        if key is None:
            return None
        stage, kind, mb = key
        held = self.local.pop((stage, kind, mb), None)
        if held is not None:
            return held
        posted = self.posted.pop((stage, kind, mb), None)
        if posted is not None:
            return self.comms.wait_recv(posted)
        return self.comms.recv(self.schedule.stage_to_rank[stage], stage, kind, mb)

    def _put(self, tensor: torch.Tensor, to_stage: int, from_stage: int, kind: int,
             mb: int) -> None:
        home = self.schedule.stage_to_rank[to_stage]
        if home == self.pp_rank:
            self.local[(from_stage, kind, mb)] = tensor
        else:
            self.comms.send(tensor, home, from_stage, kind, mb)

    def run_action(self, action, step: int) -> None:
        stage, kind, mb = action
        runtime = self.runtimes[stage]
        if runtime.tp_comm is not None:
            runtime.tp_comm.microbatch = mb
        schedule = self.schedule
        last = stage == schedule.num_stages - 1
        if kind == FORWARD:
            tokens, targets = self._microbatch(mb)
            x = tokens if stage == 0 else self._get(action)
            version = runtime.current_version() if schedule.is_async else step
            with self.recorder.span(kind, stage=stage, microbatch=mb, version=version):
                out = runtime.forward(mb, x, targets if last else None, version)
            self.versions[(kind, stage, mb)] = runtime.states[mb].version
            if not last:
                self._put(out, stage + 1, stage, ACTIVATION, mb)
            return
        version = runtime.states[mb].version
        self.versions[(kind, stage, mb)] = version
        if kind == BACKWARD_WEIGHT:
            with self.recorder.span(kind, stage=stage, microbatch=mb, version=version):
                runtime.backward_weight(mb)
        else:
            grad_out = self._get(action)  # None on the last stage: it starts from the loss
            compute = runtime.backward_input if kind == BACKWARD_INPUT else runtime.backward
            with self.recorder.span(kind, stage=stage, microbatch=mb, version=version):
                grad_in = compute(mb, grad_out)
            if stage > 0:
                self._put(grad_in, stage - 1, stage, GRADIENT, mb)
        if schedule.is_async and kind != BACKWARD_INPUT and runtime.due_for_update():
            with self.recorder.span("optim", stage=stage, version=runtime.current_version()):
                runtime.optimizer_step()

    def _my_actions(self) -> list:
        """This rank's order with every overlapped F;B pair (DualPipe) as its two halves.

        The engine runs a pair's halves one after the other on one stream: the same numbers
        as running them at once, without the overlap the simulator's ``CostModel.overlap``
        models (PyTorch's runtime does the same unless a custom overlap function is given).
        The second half's receive is posted while the first half computes.
        """
        return [half for entry in self.schedule.actions[self.pp_rank]
                for half in entry.sub_actions]

    def _maybe_fail(self, step: int) -> None:
        if self.fault is None or self.fault.step != step:
            return
        if self.fault.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault on rank {self.fault.rank} at step {step}")

    def _collect_losses(self, first_step: int = 0) -> None:
        """Report each step's mean loss once the last stage has seen all its microbatches."""
        last = self.runtimes.get(self.schedule.num_stages - 1)
        if last is None:
            return
        per_step = self.schedule.microbatches_per_step
        for local in sorted({mb // per_step for mb in last.losses}):
            mbs = range(local * per_step,
                        min((local + 1) * per_step, self.schedule.num_microbatches))
            if all(mb in last.losses for mb in mbs):
                loss = float(torch.stack([last.losses.pop(mb) for mb in mbs]).mean())
                step = first_step + local
                self.step_losses[step] = loss
                if self.hooks.on_loss is not None:
                    self.hooks.on_loss(step, loss)

    def run_sync_step(self, step: int) -> None:
        """One synchronous training step: every action, the flush, one optimizer step."""
        self.recorder.step = step
        self.first_step = step
        if self.hooks.on_step is not None:
            self.hooks.on_step(step)
        actions = self._my_actions()
        for position, action in enumerate(actions):
            if position == len(actions) // 2:
                self._maybe_fail(step)
            if position + 1 < len(actions):
                self.prefetch(actions[position + 1])
            self.run_action(action, step)
        self.comms.drain()
        if self.hooks.after_flush is not None:
            for runtime in self.runtimes.values():
                self.hooks.after_flush(runtime)
        if self.hooks.before_optim is not None:
            self.hooks.before_optim(step, self.runtimes)
        for stage, runtime in self.runtimes.items():
            with self.recorder.span("optim", stage=stage, version=step):
                runtime.optimizer_step()
        self._collect_losses(step)

    def run_async(self) -> None:
        """The whole asynchronous schedule: no flush, per-stage updates as they fall due."""
        actions = self._my_actions()
        last_stage = self.schedule.num_stages - 1
        fault_step = self.fault.step if self.fault is not None else None
        reached = -1  # steps interleave without a flush: report each the first time it starts
        for position, action in enumerate(actions):
            step = self.schedule.step_of(action.microbatch)
            self.recorder.step = step
            if step > reached:
                reached = step
                if self.hooks.on_step is not None:
                    self.hooks.on_step(step)
            if step == fault_step:
                fault_step = None
                self._maybe_fail(step)
            if position + 1 < len(actions):
                self.prefetch(actions[position + 1])
            self.run_action(action, step)
            if action.stage == last_stage and action.kind == FORWARD:
                self._collect_losses()
        self.comms.drain()
