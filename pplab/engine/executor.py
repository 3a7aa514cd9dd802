"""The one executor loop: run any valid schedule on real processes.

What it teaches: a schedule is just each rank's ordered list of actions. The loop takes the
next action, gets what it needs (``pplab.schedules.needs``: from its own stages if they live
here, else a receive from the rank that holds them), computes, and hands the result on.
Nothing here knows GPipe from 1F1B from zero-bubble: a new schedule never touches this file.

Receives are posted early: one action ahead, so the transfer overlaps the computation
before it, and all the rest of the step's (up to ``MAX_POSTED_RECEIVES``) as soon as the
rank would block on one anyway, so that posting them costs idle time, not step time. Where
each action's input comes from and its output goes is worked out once per schedule.

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
from functools import partial
from typing import NamedTuple

import torch

from pplab.engine.comms import ACTIVATION, GRADIENT, PipeComms
from pplab.engine.optimizer_sync import OptimizerSync, redo_forwards
from pplab.engine.recorder import Recorder
from pplab.engine.stage import StageRuntime
from pplab.engine.train_config import Fault
from pplab.limits import MAX_POSTED_RECEIVES
from pplab.schedules import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    Action,
    Schedule,
    message_into,
    message_of,
    needs,
    weight_versions,
)
from pplab.schedules.steps import validation_points
from pplab.timeline.events import EventKind

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


class _Routed(NamedTuple):
    """One action with its messages worked out once per schedule, not once per step.

    ``needs`` is the (sender stage, message kind, microbatch) it takes from another stage,
    or None; ``from_rank`` the pipeline rank that sends it (None: handed over locally);
    ``to_rank`` where its output goes (None: nowhere, or kept on this rank).
    """

    action: Action
    needs: tuple[int, int, int] | None
    from_rank: int | None
    to_rank: int | None


class Executor:
    """Runs ``schedule.actions[pp_rank]`` with the stages this process holds.

    ``pp_rank`` is the process's place in its pipeline (the schedule's rank), not its global
    rank: with tensor or data parallelism several processes share one ``pp_rank``.
    ``batch_for_step(step)`` returns this replica's microbatches of that training step.
    ``fault``, when given, is this process's own (``--fault`` named its global rank).
    """

    def __init__(self, schedule: Schedule, pp_rank: int, runtimes: dict[int, StageRuntime],
                 comms: PipeComms, recorder: Recorder, batch_for_step: Callable[[int], Batch],
                 hooks: ExecutorHooks | None = None, fault: Fault | None = None,
                 sync: OptimizerSync | None = None) -> None:
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
        # The version each (stage, microbatch) of an asynchronous schedule runs with is the
        # schedule's (PipeDream: the newest; 2BW: the previous step's); each stage's stash
        # keeps a version while a microbatch scheduled on it still needs it.
        self.scheduled_versions = weight_versions(schedule) if schedule.is_async else {}
        for stage, runtime in runtimes.items():
            if runtime.stash is not None:
                runtime.stash.expect_forwards(
                    v for (s, _), v in self.scheduled_versions.items() if s == stage)
        # This rank's actions in the order it walks them, each with its messages routed.
        self.walk = [self._resolve(action) for action in self._my_actions()]
        # Positions of the actions that receive, in walk order; _post_through posts them.
        self._receivers = [i for i, routed in enumerate(self.walk)
                           if routed.from_rank is not None]
        self._next_receiver = 0
        self._post_the_rest = partial(self._post_through, len(self.walk))
        # With a global optimizer state (--clip-grad, --optimizer-sync) ``sync`` steps the
        # optimizer; under post-validation the previous step is validated at _validate_at.
        self.sync = sync
        self._validate_at = (validation_points(schedule)[pp_rank]
                             if sync is not None and sync.post else -1)
        # Only the first stage reads the tokens and only the last the targets.
        self._reads_batches = bool({0, schedule.num_stages - 1} & set(runtimes))
        self._step_now = 0  # the step of the action being run, for the batch made ahead

    def _microbatch(self, mb: int) -> tuple[torch.Tensor, torch.Tensor]:
        per_step = self.schedule.microbatches_per_step
        step = self.first_step + mb // per_step
        if step not in self._batches:
            self._batches[step] = self.batch_for_step(step)
        for old in [s for s in self._batches if s < step]:
            del self._batches[old]
        return self._batches[step][mb % per_step]

    def _while_blocked(self) -> None:
        """Work done while the rank waits for a message anyway: post the receives still to
        come, and build the next step's batch (so the next step's first forward needs
        nothing else first)."""
        self._post_the_rest()
        upcoming = self._step_now + 1
        # an asynchronous walk knows its last step; a synchronous one is rerun per step
        beyond = self.schedule.is_async and upcoming >= self.schedule.num_steps
        if self._reads_batches and not beyond and upcoming not in self._batches:
            self._batches[upcoming] = self.batch_for_step(upcoming)

    def _resolve(self, action) -> _Routed:
        """Where ``action``'s input comes from and where its output goes: what it ``needs``
        from the stage next to it, and the action language's one rule for who sends to whom
        (``message_into``, ``message_of``): a forward takes the previous stage's activation
        and feeds the next, a backward (B or I) takes the next stage's input gradient and
        feeds the previous, a W needs only its own stage's I and sends nothing. A neighbour
        on this rank is handed over locally: no rank on that side."""
        stage_to_rank = self.schedule.stage_to_rank
        key = None
        for sender, kind, mb in needs(action, self.schedule.num_stages):
            if sender != action.stage:
                key = (sender, ACTIVATION if kind == FORWARD else GRADIENT, mb)
        incoming = message_into(action, stage_to_rank)
        outgoing = message_of(action, stage_to_rank, self.pp_rank)
        return _Routed(action, key, incoming.sender if incoming else None,
                        outgoing.receiver if outgoing else None)

    def _post_through(self, position: int) -> None:
        """Post every receive the walk needs up to ``position``, at most MAX_POSTED at once.

        Called one action ahead, so a transfer overlaps the computation before it, and again
        with a far ``position`` when the rank is about to block anyway: receives posted while
        it waits cost the step nothing, and a sender never finds its receiver unready.
        """
        receivers, walk = self._receivers, self.walk
        while (self._next_receiver < len(receivers) and receivers[self._next_receiver] <= position
               and len(self.posted) < MAX_POSTED_RECEIVES):
            routed = walk[receivers[self._next_receiver]]
            if routed.needs not in self.posted:  # a step begun again keeps what it posted
                self.posted[routed.needs] = self.comms.post_recv(routed.from_rank,
                                                                  *routed.needs)
            self._next_receiver += 1

    def _get(self, routed: _Routed, position: int) -> torch.Tensor | None:
        """What an action needs from another stage: handed over locally, or received."""
        key = routed.needs
        if key is None:
            return None
        if routed.from_rank is None:
            return self.local.pop(key)
        self._post_through(position)
        return self.comms.wait_recv(self.posted.pop(key), while_blocked=self._while_blocked)

    def _put(self, tensor: torch.Tensor, routed: _Routed) -> None:
        stage, kind, mb = routed.action
        message = ACTIVATION if kind == FORWARD else GRADIENT
        if routed.to_rank is None:
            self.local[(stage, message, mb)] = tensor
        else:
            self.comms.send(tensor, routed.to_rank, stage, message, mb)

    def run_action(self, routed: _Routed, step: int, position: int) -> None:
        stage, kind, mb = routed.action
        runtime = self.runtimes[stage]
        if runtime.tp_comm is not None:
            runtime.tp_comm.microbatch = mb
        schedule = self.schedule
        last = stage == schedule.num_stages - 1
        if kind == FORWARD:
            x = self._microbatch(mb)[0] if stage == 0 else self._get(routed, position)
            targets = self._microbatch(mb)[1] if last else None
            version = self.scheduled_versions[(stage, mb)] if schedule.is_async else step
            with self.recorder.span(kind, stage=stage, microbatch=mb, version=version):
                out = runtime.forward(mb, x, targets, version)
            self.versions[(kind, stage, mb)] = runtime.states[mb].version
            if not last:
                self._put(out, routed)
            return
        version = runtime.states[mb].version
        self.versions[(kind, stage, mb)] = version
        if kind == BACKWARD_WEIGHT:
            with self.recorder.span(kind, stage=stage, microbatch=mb, version=version):
                runtime.backward_weight(mb)
        else:
            grad_out = self._get(routed, position)  # None on the last stage: from the loss
            compute = runtime.backward_input if kind == BACKWARD_INPUT else runtime.backward
            with self.recorder.span(kind, stage=stage, microbatch=mb, version=version):
                grad_in = compute(mb, grad_out)
            if stage > 0:
                self._put(grad_in, routed)
        if schedule.is_async and kind != BACKWARD_INPUT and runtime.due_for_update():
            now = runtime.current_version()
            with self.recorder.span(EventKind.OPTIM, stage=stage, version=now):
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
                        min((local + 1) * per_step, self.schedule.total_microbatches))
            if all(mb in last.losses for mb in mbs):
                loss = float(torch.stack([last.losses.pop(mb) for mb in mbs]).mean())
                step = first_step + local
                self.step_losses[step] = loss
                if self.hooks.on_loss is not None:
                    self.hooks.on_loss(step, loss)

    def run_sync_step(self, step: int) -> None:
        """One synchronous training step: every action, the flush, one optimizer step."""
        self.recorder.step = step
        self.first_step = self._step_now = step
        if self.hooks.on_step is not None:
            self.hooks.on_step(step)
        self._next_receiver = 0
        walk = self.walk
        position = 0
        while position < len(walk):
            if (position == self._validate_at and self.sync.awaits_validation
                    and self.sync.validate(self.runtimes)):
                redo_forwards(self, position, step)  # they ran on rejected weights
                position = 0
                continue
            if position == len(walk) // 2:
                self._maybe_fail(step)
            self._post_through(position + 1)
            self.run_action(walk[position], step, position)
            position += 1
        self.comms.drain()
        if self.hooks.after_flush is not None:
            for runtime in self.runtimes.values():
                self.hooks.after_flush(runtime)
        if self.sync is not None:
            self.sync.inject(step, self.runtimes)
        if self.hooks.before_optim is not None:
            self.hooks.before_optim(step, self.runtimes)
        if self.sync is not None:
            self.sync.step(step, self.runtimes)
        else:
            for stage, runtime in self.runtimes.items():
                with self.recorder.span(EventKind.OPTIM, stage=stage, version=step):
                    runtime.optimizer_step()
        self._collect_losses(step)

    def finish(self) -> None:
        """After the last step: a post-validated run validates it (the others have nothing
        left to do)."""
        if self.sync is not None:
            self.sync.finish(self.runtimes)

    def run_async(self) -> None:
        """The whole asynchronous schedule: no flush, per-stage updates as they fall due."""
        last_stage = self.schedule.num_stages - 1
        fault_step = self.fault.step if self.fault is not None else None
        reached = -1  # steps interleave without a flush: report each the first time it starts
        self._next_receiver = 0
        for position, routed in enumerate(self.walk):
            action = routed.action
            step = self.schedule.step_of(action.microbatch)
            self.recorder.step = self._step_now = step
            if step > reached:
                reached = step
                if self.hooks.on_step is not None:
                    self.hooks.on_step(step)
            if step == fault_step:
                fault_step = None
                self._maybe_fail(step)
            self._post_through(position + 1)
            self.run_action(routed, step, position)
            if action.stage == last_stage and action.kind == FORWARD:
                self._collect_losses()
        self.comms.drain()
