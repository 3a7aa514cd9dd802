"""The optimizer step's global state on real ranks: a barrier, or post-validation and rollback.

What it teaches: clipping the gradient by its global norm and skipping a step whose gradient
is not finite both read one number that no stage has alone, the sum of squared gradients
over every stage. A barrier all-reduces it first: no rank steps, nor starts the next step,
before the slowest has finished. The zero-bubble paper (Qi et al., ICLR 2024,
arXiv:2401.10241, Sec. 4, Fig. 4) bypasses the barrier, and this module does what it
describes: "a partially reduced global state is received from the previous stage, combined
with the current stage's local state, and passed on to the next stage"; each rank steps
when that partial state allows (a partial norm can only grow, so one already over the clip
or not finite holds the step back); "the fully reduced global state is then propagated back
from the last stage to first stage" during the next step's warm-up, where each rank
validates before its first backward (``pplab.schedules.steps.validation_points``). When the
full state disagrees, the rank rolls back and redoes the step clipped, or skips it, exactly
as the barrier would have, and the forwards it ran on the rejected weights run again.

The rollback restores a copy of the weights and Adam's state taken before the optimistic
step: three times the stage's parameter memory while the step is unvalidated, but exact to
the bit. The paper's Appendix C reverses AdamW's arithmetic in place instead, which needs no
copy but gives the weights back only up to rounding.

    pplab train --schedule zb-h2 --pp 2 --microbatches 8 --steps 6 --clip-grad 0.05 \\
        --optimizer-sync post --force-rollback-at 3
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from pplab.engine.comms import ACTIVATION
from pplab.engine.recorder import Recorder
from pplab.engine.stage import StageRuntime
from pplab.engine.train_config import ForcedRollback, parse_forced_rollback
from pplab.schedules.steps import pre_validation_forwards
from pplab.timeline.events import EventKind

EPSILON = 1e-6  # the clip coefficient is clip / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_
SPIKE = 10.0  # a forced spike makes the last stage's gradient norm this many times the clip
STATE_BYTES = 8  # one float64: the sum of squared gradients (NaN or inf when any is)
PARTIAL, GLOBAL = 0, 1


def verdict(sumsq: float, clip: float | None) -> tuple[str, float]:
    """What the optimizer does given a (partially or fully) reduced sum of squared gradients:
    ("skip", 0.0) when it is not finite, ("clip", coefficient) when its root exceeds
    ``clip``, else ("step", 1.0)."""
    if not math.isfinite(sumsq):
        return "skip", 0.0
    if clip is not None:
        coefficient = clip / (math.sqrt(sumsq) + EPSILON)
        if coefficient < 1.0:
            return "clip", coefficient
    return "step", 1.0


def local_sumsq(runtimes: dict[int, StageRuntime]) -> float:
    """This rank's share of the global state: its stages' squared gradients, in float64."""
    total = 0.0
    for stage in sorted(runtimes):
        for param in runtimes[stage].module.parameters():
            if param.grad is not None:
                total += float(param.grad.detach().double().square().sum())
    return total


def _stage_of(runtimes: dict[int, StageRuntime]) -> int:
    """The stage an optimizer event names: the rank's one stage, or -1 when it holds several."""
    return next(iter(runtimes)) if len(runtimes) == 1 else -1


def _apply(runtime: StageRuntime, action: str, coefficient: float) -> None:
    """Step (clipped when ``action`` says so) or skip, then clear the gradients."""
    if action != "skip":
        if action == "clip":
            with torch.no_grad():
                for param in runtime.module.parameters():
                    if param.grad is not None:
                        param.grad.mul_(coefficient)
        runtime.optimizer.step()
    runtime.optimizer.zero_grad(set_to_none=True)


def _backup(runtime: StageRuntime) -> list:
    """Weights and optimizer state of every parameter, copied before an optimistic step."""
    saved = []
    for param in runtime.module.parameters():
        state = runtime.optimizer.state.get(param)
        copy = None if not state else {key: value.clone() if torch.is_tensor(value) else value
                                       for key, value in state.items()}
        saved.append((param, param.detach().clone(), copy))
    return saved


def _restore(runtime: StageRuntime, saved: list) -> None:
    with torch.no_grad():
        for param, value, state in saved:
            param.copy_(value)
            if state is None:
                runtime.optimizer.state.pop(param, None)
            else:
                runtime.optimizer.state[param] = state


def _bytes(saved: list) -> int:
    tensors = [value for _, value, _ in saved]
    tensors += [t for _, _, state in saved if state for t in state.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


class OptimizerSync:
    """One rank's optimizer steps when the ranks must agree on the global state.

    ``pp_ranks[r]`` is the global rank at pipeline position r (one stage each under "post");
    ``group`` a gloo group of those ranks (None: the whole world), which the state travels
    on even beside NCCL, whose messages match by order rather than by tag; ``tag`` the first
    message tag the pipeline's own messages do not use.
    """

    def __init__(self, mode: str, clip: float | None, forced: ForcedRollback | None,
                 pp_rank: int, pp_ranks: tuple[int, ...], recorder: Recorder, tag: int,
                 group=None) -> None:
        self.mode, self.clip, self.forced = mode, clip, forced
        self.pp_rank, self.pp_ranks = pp_rank, pp_ranks
        self.last = pp_rank == len(pp_ranks) - 1
        self.recorder, self.tag, self.group = recorder, tag, group
        self.device = torch.device("cpu")  # the state is one float64 on gloo, beside any NCCL
        self.pending: list = []  # sends of the state still in flight
        self.unvalidated: int | None = None  # the step whose update awaits validation
        self.amended = False  # that step's update was (or will be) redone or skipped
        self.backups: dict[int, list] = {}
        self.verdicts: dict[int, str] = {}  # step -> "step", "clip" or "skip" (the global one)
        self.rollbacks: list[int] = []  # steps this rank stepped optimistically and undid
        self.backup_bytes = 0

    @property
    def post(self) -> bool:
        return self.mode == "post"

    def inject(self, step: int, runtimes: dict[int, StageRuntime]) -> None:
        """``--force-rollback-at``: spoil the last stage's gradient at its step."""
        runtime = runtimes.get(len(self.pp_ranks) - 1)
        if self.forced is None or self.forced.step != step or runtime is None:
            return
        grads = [p.grad for p in runtime.module.parameters() if p.grad is not None]
        with torch.no_grad():
            if self.forced.kind == "inf":
                grads[0].view(-1)[0] = math.inf
            else:
                norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads))
                for grad in grads:
                    grad.mul_(SPIKE * self.clip / norm)

    def _send(self, value: float, to: int, kind: int) -> None:
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        self.pending.append((dist.isend(tensor, self.pp_ranks[to], group=self.group,
                                        tag=self.tag + kind), tensor))

    def _receive(self, source: int, kind: int, detail: str) -> float:
        tensor = torch.zeros(1, dtype=torch.float64, device=self.device)
        with self.recorder.span(EventKind.ALLREDUCE, bytes=STATE_BYTES, detail=detail,
                                peer=self.pp_ranks[source]):
            dist.irecv(tensor, self.pp_ranks[source], group=self.group,
                       tag=self.tag + kind).wait()
        return float(tensor.item())

    def step(self, step: int, runtimes: dict[int, StageRuntime]) -> None:
        """After this rank's flush: agree on the state (barrier) or pass it on and step
        optimistically (post)."""
        self.pending = [(work, t) for work, t in self.pending if not work.is_completed()]
        mine = local_sumsq(runtimes)
        if not self.post:
            values = [torch.zeros(1, dtype=torch.float64, device=self.device)
                      for _ in self.pp_ranks]
            with self.recorder.span(EventKind.ALLREDUCE, bytes=STATE_BYTES, detail="grad norm"):
                dist.all_gather(values, torch.tensor([mine], dtype=torch.float64,
                                                     device=self.device), group=self.group)
            total = 0.0
            for value in values:  # summed in pipeline order, as the post-validation chain does
                total += float(value.item())
            self._finish_step(step, runtimes, total, "update")
            return
        partial = mine if self.pp_rank == 0 else \
            self._receive(self.pp_rank - 1, PARTIAL, "grad norm partial") + mine
        if self.last:
            if self.pp_rank > 0:
                self._send(partial, self.pp_rank - 1, GLOBAL)
            self._finish_step(step, runtimes, partial, "update (state complete)")
            self.unvalidated, self.amended = step, self.verdicts[step] != "step"
            return
        self._send(partial, self.pp_rank + 1, PARTIAL)
        action, _ = verdict(partial, self.clip)
        if action == "step":
            saved = {stage: _backup(runtime) for stage, runtime in runtimes.items()}
            self.backups[step] = saved
            self.backup_bytes = max(self.backup_bytes, sum(map(_bytes, saved.values())))
            with self.recorder.span(EventKind.OPTIM, stage=_stage_of(runtimes), version=step,
                                    detail="optimistic update"):
                for runtime in runtimes.values():
                    runtime.optimizer.step()
        self.unvalidated = step

    def _finish_step(self, step: int, runtimes: dict[int, StageRuntime], total: float,
                     detail: str) -> None:
        action, coefficient = verdict(total, self.clip)
        self.verdicts[step] = action
        if action == "skip":
            detail += ": skipped, gradient not finite"
        elif action == "clip":
            detail += f": clipped x{coefficient:.3g}"
        with self.recorder.span(EventKind.OPTIM, stage=_stage_of(runtimes), version=step,
                                detail=detail):
            for runtime in runtimes.values():
                _apply(runtime, action, coefficient)

    @property
    def awaits_validation(self) -> bool:
        return self.post and self.unvalidated is not None

    def validate(self, runtimes: dict[int, StageRuntime]) -> bool:
        """Check the unvalidated step against the full state; True when it was amended, so the
        forwards run since on the optimistic weights (here and upstream) must run again."""
        step, self.unvalidated = self.unvalidated, None
        if self.last:
            return self.amended
        now, self.recorder.step = self.recorder.step, step  # its events belong to that step
        try:
            return self._validate(step, runtimes)
        finally:
            self.recorder.step = now

    def _validate(self, step: int, runtimes: dict[int, StageRuntime]) -> bool:
        total = self._receive(self.pp_rank + 1, GLOBAL, "grad norm global")
        if self.pp_rank > 0:
            self._send(total, self.pp_rank - 1, GLOBAL)
        action, coefficient = verdict(total, self.clip)
        self.verdicts[step] = action
        saved = self.backups.pop(step, None)
        if action == "step":
            if saved is None:
                raise RuntimeError(f"step {step}: the full state allows the update that the "
                                   f"partial state held back on pipeline rank {self.pp_rank}")
            for runtime in runtimes.values():
                runtime.optimizer.zero_grad(set_to_none=True)
            return False
        detail = "rollback, " if saved is not None else ""
        detail += "step skipped" if action == "skip" else f"redone clipped x{coefficient:.3g}"
        with self.recorder.span(EventKind.OPTIM, stage=_stage_of(runtimes), version=step,
                                detail=detail):
            if saved is not None:
                self.rollbacks.append(step)
                for stage, runtime in runtimes.items():
                    _restore(runtime, saved[stage])
            for runtime in runtimes.values():
                _apply(runtime, action, coefficient)
        return True

    def finish(self, runtimes: dict[int, StageRuntime]) -> None:
        """After the last step: validate it, and let every state message land."""
        if self.awaits_validation:
            self.validate(runtimes)
        for work, _ in self.pending:
            work.wait()
        self.pending.clear()

    def summary(self) -> dict:
        return {"verdicts": {str(k): v for k, v in sorted(self.verdicts.items())},
                "rollbacks": list(self.rollbacks), "backup_bytes": self.backup_bytes}


def make_optimizer_sync(config, schedule, topology, rank: int, recorder: Recorder,
                        backend: str) -> OptimizerSync:
    """The OptimizerSync of global ``rank``, with a gloo group per pipeline where the world is
    more than one pipeline or runs NCCL (every rank creates every group, as torch asks)."""
    me = topology.coords(rank)
    group = None
    if topology.world_size > topology.pp_size or backend != "gloo":
        for dp in range(topology.dp_size):
            for tp in range(topology.tp_size):
                ranks = [topology.rank_of(pp, dp, tp) for pp in range(topology.pp_size)]
                made = dist.new_group(ranks, backend="gloo")
                if (dp, tp) == (me.dp, me.tp):
                    group = made
    forced = parse_forced_rollback(config.force_rollback_at) \
        if config.force_rollback_at is not None else None
    pp_ranks = tuple(topology.rank_of(pp, me.dp, me.tp) for pp in range(topology.pp_size))
    # Past every tag of the pipeline's messages: (microbatch x stages + stage) x 2 + kind.
    tag = 2 * schedule.num_stages * (schedule.total_microbatches + 1)
    return OptimizerSync(config.optimizer_sync, config.clip_grad, forced, me.pp, pp_ranks,
                         recorder, tag, group)


REDONE = "redone after a rollback"


def redo_forwards(executor, upto: int, step: int) -> None:
    """Begin ``step`` again on ``executor``'s rank: the forwards before position ``upto`` ran on
    weights the validation rejected, and so did every forward the upstream rank ran before
    it validated, which it is now sending again. Drop this rank's, take and throw away the
    upstream's first sends not taken yet (the second of each tag is the good one), and keep
    every other posted receive: its message has not been sent twice."""
    redone = set()
    for routed in executor.walk[:upto]:
        stage, _, mb = routed.action
        runtime = executor.runtimes[stage]
        state = runtime.states.pop(mb, None)
        if state is not None:
            runtime.live_bytes -= state.saved_bytes
        runtime.losses.pop(mb, None)
        redone.add((stage, mb))
    for row in executor.recorder.rows:  # [kind, stage, microbatch, step, ..., detail]
        if row[0] == EventKind.FORWARD and row[3] == step and (row[1], row[2]) in redone:
            row[9] = REDONE
    upstream = executor.pp_rank - 1
    if upstream >= 0:
        taken = {routed.needs for routed in executor.walk[:upto]}
        for action in pre_validation_forwards(executor.schedule)[upstream]:
            key = (action.stage, ACTIVATION, action.microbatch)
            if key in taken:
                continue
            posted = executor.posted.pop(key, None)
            if posted is None:
                posted = executor.comms.post_recv(upstream, *key)
            executor.comms.wait_recv(posted)
    executor._next_receiver = 0
