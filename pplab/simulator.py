"""Predict a schedule's timeline: discrete events over a cost model.

The simulator runs a ``Schedule`` the way the engine does: each rank works through its own
actions in order, sends are posted without waiting and receives block. Nothing else is
assumed, so every gap in the result (the bubble) comes out of the dependencies; idle time
is never placed by hand. Times are "cost units" (F = 1 by default), not seconds.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --cost f=1,b=2
    python -m pplab simulate --schedule gpipe --pp 4 --microbatches 8 --json
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, fields

import pandas as pd

from .schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    Schedule,
    finishes,
    needs,
    weight_versions,
)
from .timeline import events_from_columns

SOURCE = "simulated"
TIME_UNIT = "cost units"

# Short names accepted by CostModel.parse; "comm" is the latency of one message.
_PARSE_KEYS = {
    "f": "forward", "b": "backward", "i": "backward_input", "w": "backward_weight",
    "comm": "latency", "lat": "latency", "bw": "bandwidth", "bytes": "message_bytes",
    "opt": "optimizer",
}


@dataclass(frozen=True)
class CostModel:
    """Durations of one stage's work and of one message between ranks.

    ``forward`` and the backward figures are for one stage holding a rank's whole share of
    the model. Interleaved schedules cut that share into V chunks, each costing 1/V, so one
    CostModel compares schedules of the same model fairly. ``stage_scale`` multiplies the
    cost of individual stages (one factor per stage, or per rank for multi-chunk
    placements) to model unequal stages.
    """

    forward: float = 1.0
    backward: float = 2.0
    backward_input: float = 1.0
    backward_weight: float = 1.0
    latency: float = 0.0
    bandwidth: float | None = None
    message_bytes: float = 0.0
    optimizer: float = 0.0
    stage_scale: tuple[float, ...] | None = None
    link_scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("forward", "backward", "backward_input", "backward_weight", "latency",
                     "message_bytes", "optimizer"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"cost {name} must be a finite number >= 0, got {value!r}")
        if self.bandwidth is not None and (
                not isinstance(self.bandwidth, int | float) or not self.bandwidth > 0
                or not math.isfinite(self.bandwidth)):
            raise ValueError(f"cost bandwidth must be a finite number > 0, got {self.bandwidth!r}")
        if self.stage_scale is not None:
            scale = tuple(float(x) for x in self.stage_scale)
            if not scale or any(not math.isfinite(x) or x <= 0 for x in scale):
                raise ValueError(f"stage_scale needs positive finite factors, got {scale}")
            object.__setattr__(self, "stage_scale", scale)
        if self.link_scale is not None:
            links = tuple(float(x) for x in self.link_scale)
            if not links or any(not math.isfinite(x) or x < 0 for x in links):
                raise ValueError(f"link_scale needs finite factors >= 0, got {links}")
            object.__setattr__(self, "link_scale", links)

    @classmethod
    def parse(cls, text: str) -> CostModel:
        """Read ``"f=1,b=2,i=1,w=1,comm=0"`` (also ``lat=``, ``bw=``, ``bytes=``, ``opt=``).

        ``scale=1:1.5:1`` gives per-stage factors, ``links=1:4:1`` per-boundary factors of the
        message time. Raise ValueError on anything else.
        """
        values: dict[str, object] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key = key.strip().lower()
            if not sep or not raw.strip():
                raise ValueError(f"cost item {item!r} is not KEY=NUMBER (e.g. f=1,b=2,comm=0.1)")
            if key in ("scale", "links"):
                try:
                    factors = tuple(float(x) for x in raw.split(":"))
                except ValueError:
                    raise ValueError(f"cost {key} {raw!r} is not numbers joined by ':'") from None
                values["stage_scale" if key == "scale" else "link_scale"] = factors
                continue
            if key not in _PARSE_KEYS:
                known = ", ".join(list(_PARSE_KEYS) + ["scale", "links"])
                raise ValueError(f"unknown cost key {key!r}; use {known}")
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(f"cost {key}={raw!r} is not a number") from None
            values[_PARSE_KEYS[key]] = number
        return cls(**values)

    def to_dict(self) -> dict[str, object]:
        """Plain values for run metadata."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("stage_scale", "link_scale"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out

    def transfer_time(self) -> float:
        """Time one activation or gradient message occupies a link (bytes / bandwidth)."""
        return 0.0 if self.bandwidth is None else self.message_bytes / self.bandwidth

    def message_time(self) -> float:
        """Latency plus transfer time of one activation or gradient message."""
        return self.latency + self.transfer_time()

    def link_factors(self, num_stages: int) -> list[float]:
        """Multiplier of the message time across each of the ``num_stages - 1`` boundaries."""
        if self.link_scale is None:
            return [1.0] * max(num_stages - 1, 0)
        if len(self.link_scale) != num_stages - 1:
            raise ValueError(
                f"link_scale has {len(self.link_scale)} factors; {num_stages} stages have "
                f"{num_stages - 1} links between them")
        return list(self.link_scale)

    def stage_factors(self, schedule: Schedule) -> list[float]:
        """Multiplier of the per-stage figures for every stage of ``schedule``."""
        num_stages, pp_size = schedule.num_stages, schedule.pp_size
        chunk = pp_size / num_stages  # a stage is 1/V of a rank's share
        scale = self.stage_scale
        if scale is None:
            return [chunk] * num_stages
        if len(scale) == num_stages:
            return [chunk * s for s in scale]
        if len(scale) == pp_size:
            return [chunk * scale[schedule.stage_to_rank[s]] for s in range(num_stages)]
        raise ValueError(
            f"stage_scale has {len(scale)} factors; the schedule has {num_stages} stages "
            f"on {pp_size} ranks")


def simulate(schedule: Schedule, cost: CostModel = CostModel()) -> pd.DataFrame:
    """Run ``schedule`` under ``cost`` and return its Event table (source "simulated").

    Event-driven and linear in the number of actions: each rank runs until its next
    action needs data not yet produced, then parks on that one missing fact; producing
    the fact wakes it. Raise ValueError if the schedule deadlocks or is incomplete
    (``pplab.schedules.validate`` explains such schedules in detail).
    """
    num_stages = schedule.num_stages
    factors = cost.stage_factors(schedule)
    durations = {
        FORWARD: cost.forward, FULL_BACKWARD: cost.backward,
        BACKWARD_INPUT: cost.backward_input, BACKWARD_WEIGHT: cost.backward_weight,
    }
    stage_to_rank = schedule.stage_to_rank
    versions = weight_versions(schedule)
    link_factors = cost.link_factors(num_stages)
    message_bytes = int(cost.message_bytes)

    columns: dict[str, list] = defaultdict(list)

    def emit(rank, stage, kind, mb, step, start, end, version=-1, peer=-1, nbytes=0, detail=""):
        columns["rank"].append(rank)
        columns["stage"].append(stage)
        columns["kind"].append(kind)
        columns["microbatch"].append(mb)
        columns["step"].append(step)
        columns["start"].append(start)
        columns["end"].append(end)
        columns["version"].append(version)
        columns["peer"].append(peer)
        columns["bytes"].append(nbytes)
        columns["detail"].append(detail)

    # ready[fact] = time the fact is usable on the rank holding the fact's stage;
    # arrival[(fact, rank)] = time a message carrying it lands on another rank.
    ready: dict[tuple[int, str, int], float] = {}
    arrival: dict[tuple[tuple[int, str, int], int], float] = {}
    link_free: dict[tuple[int, int], float] = defaultdict(float)
    waiting: dict[tuple[int, str, int], list[int]] = defaultdict(list)
    clock = {rank: 0.0 for rank in schedule.actions}
    heads = {rank: 0 for rank in schedule.actions}
    backwards_done: dict[int, int] = defaultdict(int)
    runnable = deque(schedule.actions)

    def available(fact, rank) -> float | None:
        """When ``fact`` can be used on ``rank``, or None if not produced yet."""
        if stage_to_rank[fact[0]] == rank:
            return ready.get(fact)
        return arrival.get((fact, rank))

    def send(action, rank, end) -> None:
        # A forward feeds the next stage; an input gradient (B or I) feeds the previous one.
        if action.kind == FORWARD:
            target = action.stage + 1
            fact = (action.stage, FORWARD, action.microbatch)
            what = "activation"
        elif action.kind in (FULL_BACKWARD, BACKWARD_INPUT):
            target = action.stage - 1
            fact = (action.stage, BACKWARD_INPUT, action.microbatch)
            what = "gradient"
        else:
            return
        if not 0 <= target < num_stages:
            return
        peer = stage_to_rank[target]
        if peer == rank:
            return
        factor = link_factors[min(action.stage, target)]
        message = cost.message_time() * factor
        transfer = cost.transfer_time() * factor
        if message <= 0:
            arrival[(fact, peer)] = end
            return
        # Messages on one directed link go out one after another; latency overlaps.
        start = max(end, link_free[(rank, peer)])
        link_free[(rank, peer)] = start + transfer
        arrival[(fact, peer)] = start + message
        emit(rank, action.stage, "send", action.microbatch, schedule.step_of(action.microbatch),
             start, start + message, peer=peer, nbytes=message_bytes,
             detail=f"{what} {action.stage}->{target}")

    def wake(fact) -> None:
        for rank in waiting.pop(fact, ()):
            runnable.append(rank)

    while runnable:
        rank = runnable.popleft()
        actions = schedule.actions[rank]
        position = heads[rank]
        while position < len(actions):
            action = actions[position]
            start = clock[rank]
            blocked = None
            for need in needs(action, num_stages):
                when = available(need, rank)
                if when is None:
                    blocked = need
                    break
                start = max(start, when)
            if blocked is not None:
                waiting[blocked].append(rank)
                break
            end = start + durations[action.kind] * factors[action.stage]
            step = schedule.step_of(action.microbatch)
            emit(rank, action.stage, action.kind, action.microbatch, step, start, end,
                 version=versions.get((action.stage, action.microbatch), -1))
            clock[rank] = end
            for fact in finishes(action):
                ready[fact] = end
                wake(fact)
            send(action, rank, end)
            position += 1
            if schedule.is_async and action.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
                backwards_done[action.stage] += 1
                if backwards_done[action.stage] % schedule.update_every == 0 and cost.optimizer > 0:
                    emit(rank, action.stage, "optim", -1, step, end, end + cost.optimizer,
                         detail=f"update {backwards_done[action.stage] // schedule.update_every}")
                    clock[rank] = end + cost.optimizer
        heads[rank] = position

    stuck = [r for r, p in heads.items() if p < len(schedule.actions[r])]
    if stuck:
        where = ", ".join(f"rank {r} at {schedule.actions[r][heads[r]]}" for r in stuck)
        raise ValueError(f"the schedule cannot finish: {where} wait forever "
                         f"(run `pplab validate` on it for details)")
    if not schedule.is_async and cost.optimizer > 0:
        for rank in schedule.actions:
            emit(rank, -1, "optim", -1, schedule.num_steps - 1, clock[rank],
                 clock[rank] + cost.optimizer, detail="after the flush")
    columns["source"] = [SOURCE] * len(columns["rank"])
    events = events_from_columns(columns)
    return events.sort_values(["start", "rank"], kind="stable").reset_index(drop=True)


def schedule_summary(schedule: Schedule) -> dict[str, object]:
    """Name and sizes the way every run's meta.json records them, simulated or measured."""
    return {
        "name": schedule.name,
        "pp_size": schedule.pp_size,
        "num_stages": schedule.num_stages,
        "num_chunks": schedule.num_chunks,
        "num_microbatches": schedule.microbatches_per_step,
        "num_steps": schedule.num_steps,
        "is_async": schedule.is_async,
        "update_every": schedule.update_every,
    }


def metadata(schedule: Schedule, cost: CostModel) -> dict[str, object]:
    """Run metadata for a simulated run, with the keys the engine writes where they fit."""
    from datetime import UTC, datetime

    from . import __version__
    from .schedules import schedule_to_csv_text

    return {
        "source": SOURCE,
        "schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
        "config": {"cost": cost.to_dict()},
        "time_unit": TIME_UNIT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "pplab_version": __version__,
        "hardware": "simulated",
    }
