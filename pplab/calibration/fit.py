"""Fitting a calibration to a measured run: read every rank's events one action at a time.

What it teaches: a measured timeline says more than how long each forward took. Walk one
rank's events of one step in order and each action owns a *slot*, from the end of the
previous action to its own end: the computation, the waits for a message (a dependency),
the sends and receive posts (communication) and what is left (Python, bookkeeping: the
overhead). A blocked wait times a message: it ended when the message landed, so the time
from the end of the action that produced it is the link's latency. With more busy ranks
than cores, an action that ran while n ranks computed ran at min(1, cores / n) of its own
speed; dividing that out of every duration gives what it costs alone, and the number of
cores that makes those costs agree best is the machine's effective share.

    python -c "from pplab.calibration.fit import fit; from pplab.runs.run_dirs import load_run; \
print(fit(load_run('data/runs/1f1b-p4m8')).describe())"
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np
import pandas as pd

from pplab.calibration import costs, measure, variation
from pplab.calibration.model import Calibration, Contention, LinkFit
from pplab.calibration.run_prediction import schedule_of
from pplab.runs.run_dirs import Run
from pplab.runs.summary import summarize
from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    Action,
    Schedule,
    message_of,
)
from pplab.sim.cost_model import hold
from pplab.sim.sharing import SharedClock
from pplab.timeline import EventKind

BLOCKED_WAIT = 50e-6  # a receive wait longer than this blocked: the message landed at its end


class _Walk:
    """What walking every rank's steps found."""

    def __init__(self) -> None:
        self.actions: list[dict] = []  # one per compute event: where, when, its slot's parts
        self.send_time = self.recv_time = 0.0
        self.sends = 0
        self.sent: dict[tuple, int] = {}  # (rank, stage, microbatch, detail, step) -> bytes
        self.waits: list[dict] = []  # blocked receive waits
        self.tails: list[dict] = []  # per rank and step: after the last action
        self.optims: list[tuple[float, float, int]] = []  # (start, end, step)


def fit(run: Run) -> Calibration:
    """Fit a ``Calibration`` from ``run``'s measured events; ValueError if it cannot be."""
    if not (run.events["source"] == "measured").all():
        raise ValueError(f"{run.path.name} holds simulated events; calibrate a measured run")
    summary = summarize(run)
    schedule = schedule_of(run)
    steps = measure.steady_steps(summary.steps, schedule.is_async)
    if not run.events[run.events["step"].isin(steps)]["kind"].isin(COMPUTE_KINDS).any():
        raise ValueError(f"{run.path.name} has no measured F, B, I or W to calibrate from")
    fitted = steps if schedule.is_async else measure.typical_steps(run.events, steps)
    events = run.events[run.events["step"].isin(fitted)]
    # An asynchronous run is walked whole (its steps overlap on every rank), its warm-up
    # step's actions then left out of the costs as a synchronous run's are.
    walked = _walk(run.events if schedule.is_async else events, schedule.is_async)
    topology = summary.topology
    # each global rank's pipeline position, as the table records it beside the rank
    coordinates = run.events[["rank", "pp_rank"]].drop_duplicates()
    position = dict(zip(coordinates["rank"].tolist(), coordinates["pp_rank"].tolist(),
                        strict=True))

    sharing, clock = _contention(run.metadata, events, walked, topology.world_size)
    alone = clock.alone if clock is not None else (lambda start, end: end - start)
    steady = [a for a in walked.actions if a["step"] in set(fitted)]
    compute: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    python: dict[str, list[float]] = defaultdict(list)
    for item in steady:
        compute[item["stage"]][item["kind"]].append(alone(item["start"], item["end"]))
        python[item["kind"]].append(item["other"])
    typical_costs = {stage: {kind: typical(values) for kind, values in kinds.items()}
                     for stage, kinds in sorted(compute.items())}
    activation = int(statistics.median(walked.sent.values())) if walked.sent else 0
    held = variation.held_growth(steady, alone, typical_costs, activation)
    layer_split = _layer_split(run.metadata, schedule.num_stages)
    layers = costs.fit_layers(typical_costs, layer_split, activation)
    receiving = sum(costs.receives_remotely(schedule, a["stage"], a["kind"])
                    for a in walked.actions if a["step"] in set(fitted))
    tail, tail_talk, tail_rank = _tail(walked, alone)
    rank_layers = [0] * schedule.pp_size
    for stage, rank in enumerate(schedule.stage_to_rank):
        rank_layers[rank] += layer_split[stage]
    calibration = Calibration(
        run=run.path.name, steps=tuple(fitted), compute=typical_costs, per_layer=layers.per_layer,
        first_extra=layers.first_extra, last_extra=layers.last_extra,
        python_overhead={kind: typical(v) for kind, v in python.items()},
        send_cost=walked.send_time / walked.sends if walked.sends else 0.0,
        recv_cost=walked.recv_time / receiving if receiving else 0.0,
        links=(), collectives=_collectives(events), tail=tail, tail_communication=tail_talk,
        tail_layers=rank_layers[position[tail_rank]] or 1,
        optimizer=statistics.median([alone(*o[:2]) for o in walked.optims
                                     if o[2] in set(fitted)] or [0.0]),
        layer_split=layer_split, stage_to_rank=schedule.stage_to_rank, contention=sharing,
        measured=measure.measured(run, summary, steps, schedule.is_async),
        spread=variation.quantiles(variation.within_step(
            variation.unshared(steady, _busy(walked), sharing.slots) if clock else steady,
            alone)),
        step_spread=variation.quantiles(_step_factors(run, steps, fitted, schedule.is_async,
                                                      walked, clock, typical_costs)),
        held_growth=held.growth, held_seen=held.seen, held_rule=held.rule,
        split_backward_rule=layers.rule, activation_bytes=activation)
    links = _links(walked, calibration, schedule, position)
    notes = () if links or schedule.pp_size == 1 else (
        "no receive ever blocked, so no message was timed: links cost nothing here",)
    return Calibration(**{**calibration.__dict__, "links": links, "notes": notes})


def _step_factors(run: Run, steps: list[int], fitted: list[int], is_async: bool,
                  walked: _Walk, clock: SharedClock | None,
                  typical_costs: dict[int, dict[str, float]]) -> list[float]:
    """How every steady step ran against the typical costs (the fitted steps are only the
    middle half of them: the others say how far a step can stray)."""
    if not is_async and len(fitted) < len(steps):
        walked = _walk(run.events[run.events["step"].isin(steps)], is_async)
        if clock is not None:
            clock = SharedClock(_busy(walked), clock.slots)
    alone = clock.alone if clock is not None else (lambda start, end: end - start)
    actions = [a for a in walked.actions if a["step"] in set(steps)]
    return variation.step_factors(actions, alone, typical_costs)


def typical(values: list[float]) -> float:
    """The median: what one action usually costs. How much actions vary around it is kept
    apart (``Calibration.spread``), and a prediction draws from that, so a step's waits for
    the slower of two varying actions are not lost in an average."""
    return statistics.median(values)


def _top_level(frame: pd.DataFrame) -> pd.DataFrame:
    """One rank's events not nested inside another (a tensor-parallel all-reduce inside its
    F, receives posted while waiting), in time order."""
    frame = frame.sort_values(["start", "end"], ascending=[True, False], kind="stable")
    keep, reach = [], -np.inf
    work = frame["kind"].isin([*COMPUTE_KINDS, EventKind.OPTIM]).to_numpy()
    for start, end, busy in zip(frame["start"].to_numpy(), frame["end"].to_numpy(), work,
                                strict=True):
        # inside the one before it; an instant (a send of no length) is never inside anything
        keep.append(busy or start == end or not (start < reach and end <= reach))
        reach = max(reach, end)
    # walked in time order; at one instant an action of no length comes before the next
    return frame[np.array(keep, dtype=bool)].sort_values(["start", "end"], kind="stable")


def _walk(events: pd.DataFrame, is_async: bool) -> _Walk:
    walked = _Walk()
    parts = [events] if is_async else [part for _, part in events.groupby("step")]
    for part in parts:
        for rank, mine in part.groupby("rank"):
            _walk_rank(walked, int(rank), _top_level(mine))
    return walked


def _walk_rank(walked: _Walk, rank: int, mine: pd.DataFrame) -> None:
    """Cut one rank's step into slots, one per action, and a tail after the last action."""
    slot_start = float(mine["start"].iloc[0])
    waited = messaging = 0.0  # an asynchronous schedule's optimizer steps count as waited
    talking = 0.0  # all-reduces and the drain of sends after the last action
    last_end = None
    step = int(mine["step"].iloc[0])
    held: set[tuple[int, int]] = set()  # (stage, microbatch) whose activations it keeps
    for row in mine.itertuples(index=False):
        duration = float(row.end - row.start)
        if row.kind in COMPUTE_KINDS:
            walked.actions.append({
                "rank": rank, "step": int(row.step), "stage": int(row.stage), "kind": row.kind,
                "microbatch": int(row.microbatch), "start": float(row.start),
                "end": float(row.end), "held": len(held),
                "other": max(float(row.start) - slot_start - waited - messaging, 0.0)})
            hold(held, Action(int(row.stage), row.kind, int(row.microbatch)))
            slot_start, waited, messaging, last_end = float(row.end), 0.0, 0.0, float(row.end)
            talking = 0.0
        elif row.kind == EventKind.WAIT and row.stage >= 0:
            waited += duration
            if duration > BLOCKED_WAIT and row.peer >= 0:
                walked.waits.append({"rank": rank, "peer": int(row.peer), "stage": int(row.stage),
                                     "microbatch": int(row.microbatch), "step": int(row.step),
                                     "gradient": row.detail == "gradient", "end": float(row.end)})
        elif row.kind in (EventKind.SEND, EventKind.RECV):
            messaging += duration
            if row.kind == EventKind.SEND:
                walked.send_time += duration
                walked.sends += 1
                walked.sent[(rank, int(row.stage), int(row.microbatch), str(row.detail),
                             step)] = int(row.bytes)
            else:
                walked.recv_time += duration
        elif row.kind == EventKind.OPTIM:
            walked.optims.append((float(row.start), float(row.end), int(row.step)))
            waited += duration
        elif row.kind in (EventKind.ALLREDUCE, EventKind.WAIT):
            talking += duration
    if last_end is not None:
        # Sends after the last action are charged to that action's overhead, not the tail.
        walked.tails.append({"rank": rank, "step": step, "start": last_end,
                             "end": float(mine["end"].max()), "messaging": messaging,
                             "talking": talking})


def _tail(walked: _Walk, alone) -> tuple[float, float, int]:
    """Median tail of the rank that ends each step last, the part of it spent on all-reduces
    and the drain of sends, and that rank."""
    by_step: dict[int, list[dict]] = defaultdict(list)
    for tail in walked.tails:
        by_step[tail["step"]].append(tail)
    last = [max(group, key=lambda t: t["end"]) for group in by_step.values()]
    if not last:
        return 0.0, 0.0, 0
    values = [max(alone(t["start"], t["end"]) - t["messaging"], 0.0) for t in last]
    talks = [min(t["talking"], v) for t, v in zip(last, values, strict=True)]
    ranks = [t["rank"] for t in last]
    return typical(values), typical(talks), max(set(ranks), key=ranks.count)


def _links(walked: _Walk, calibration: Calibration, schedule: Schedule,
           position: dict[int, int]) -> tuple[LinkFit, ...]:
    """Time every blocked receive from the end of the action that produced its message."""
    placement = schedule.stage_to_rank
    produced = {}
    for a in walked.actions:
        sent = message_of(Action(a["stage"], a["kind"], a["microbatch"]), placement)
        if sent is not None:
            produced[(a["rank"], a["stage"], sent.what, a["microbatch"], a["step"])] = a["end"]
    # who needed each message: the action its target stage ran with it, by message_of's rule
    # (a rank of an interleaved schedule holds several stages, so the stage is in the key)
    consumer = {(a["rank"], a["step"], a["microbatch"], a["stage"], a["kind"] == FORWARD): a
                for a in walked.actions if a["kind"] != BACKWARD_WEIGHT}
    overhead = costs.overhead_costs(calibration, schedule)
    samples: dict[tuple[int, int], list[tuple[float, float, int]]] = defaultdict(list)
    for wait in walked.waits:
        carried = BACKWARD_INPUT if wait["gradient"] else FORWARD
        sent = message_of(Action(wait["stage"], carried, wait["microbatch"]), placement)
        if sent is None:
            continue
        key = (wait["peer"], wait["stage"], sent.what, wait["microbatch"], wait["step"])
        end = produced.get(key)
        user = consumer.get((wait["rank"], wait["step"], wait["microbatch"], sent.target,
                             carried == FORWARD))
        if end is None or user is None:
            continue
        nbytes = walked.sent.get((wait["peer"], wait["stage"], wait["microbatch"], sent.what,
                                  wait["step"]), 0)
        own = overhead[user["stage"]][user["kind"]]
        samples[(position[wait["peer"]], position[wait["rank"]])].append(
            (wait["end"] - end, user["start"] - end - own, nbytes))
    fits = []
    for (src, dst), found in sorted(samples.items()):
        delivery, replayed, sizes = (np.array(column) for column in zip(*found, strict=True))
        line = fit_line(sizes, delivery, src, dst)
        fits.append(LinkFit(src, dst, line.latency, max(float(np.median(replayed)), 0.0),
                            line.bandwidth, line.message_bytes, line.samples))
    return tuple(fits)


def _collectives(events: pd.DataFrame) -> dict[str, LinkFit]:
    """Latency and bandwidth of each kind of collective (tp, dp) and of the pipeline's sends:
    ``time = latency + bytes / bandwidth``, fitted when the sizes differ."""
    out = {}
    reduces = events[events["kind"] == EventKind.ALLREDUCE]
    for name, part in reduces.groupby(reduces["detail"].str.split().str[0]):
        out[str(name)] = fit_line(part["bytes"].to_numpy(), (part["end"] - part["start"])
                                  .to_numpy(), -1, -1)
    return out


def fit_line(nbytes: np.ndarray, seconds: np.ndarray, src: int, dst: int) -> LinkFit:
    """``seconds = latency + nbytes / bandwidth`` by least squares.

    In a pipeline every message of a link has one size (activations and their gradients
    share a shape): the bandwidth cannot then be told from the latency, so it stays None
    and the whole time is latency. Collectives, or runs whose messages differ, fit both.
    """
    sizes = np.unique(nbytes)
    latency, bandwidth = max(float(np.median(seconds)), 0.0), None
    if len(sizes) >= 2:
        slope, intercept = np.polyfit(nbytes.astype(float), seconds.astype(float), 1)
        if slope > 0:
            latency, bandwidth = max(float(intercept), 0.0), float(1.0 / slope)
    return LinkFit(src, dst, latency, latency, bandwidth, int(np.median(nbytes)), len(seconds))


def _layer_split(metadata: dict, num_stages: int) -> tuple[int, ...]:
    split = metadata.get("layer_split")
    if (isinstance(split, list) and len(split) == num_stages
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in split)):
        return tuple(split)
    return (1,) * num_stages  # a foreign run: one unit of model per stage


def _busy(walked: _Walk) -> list[tuple[int, float, float]]:
    """Every computation and optimizer step walked, as ``SharedClock`` reads busy time."""
    return [(a["rank"], a["start"], a["end"]) for a in walked.actions] + \
        [(-1, start, end) for start, end, _ in walked.optims]


def _contention(metadata: dict, events: pd.DataFrame, walked: _Walk,
                world: int) -> tuple[Contention, SharedClock | None]:
    """How many cores (or GPUs) the ranks had, and how much sharing them slowed compute."""
    hardware = metadata.get("hardware") if isinstance(metadata.get("hardware"), dict) else {}
    device = "cuda" if hardware.get("device") == "cuda" else "cpu"
    hosts = hardware.get("hosts") if isinstance(hardware.get("hosts"), list) else [None]
    if device == "cuda":
        slots = world if not hardware.get("gpus_shared") else int(hardware.get("gpu_count") or 1)
    else:
        cores = hardware.get("cpu_count")
        slots = (cores if isinstance(cores, int) and cores >= 1 else world) * max(len(hosts), 1)
    if world <= slots:
        return Contention(world, slots, device), None
    busy = _busy(walked)
    groups = defaultdict(list)
    for a in walked.actions:
        groups[(a["stage"], a["kind"])].append((a["start"], a["end"]))
    best = None
    for share in np.arange(1.0, world + 1e-9, 0.05):
        clock = SharedClock(busy, float(share))
        spread = sum(np.var(np.log([clock.alone(s, e) for s, e in spans]))
                     for spans in groups.values() if len(spans) > 1)
        if best is None or spread < best[0] - 1e-12:
            best = (spread, clock)
    clock = best[1]
    wall = sum(a["end"] - a["start"] for a in walked.actions)
    dedicated = sum(clock.alone(a["start"], a["end"]) for a in walked.actions)
    return Contention(world, slots, device, round(clock.slots, 2),
                      wall / dedicated if dedicated > 0 else 1.0), clock
