"""From a calibration to the simulator's cost model, for the run's own schedule or another.

What it teaches: a measured run prices its own layout, stage by stage; predicting another
(more microbatches, other chunks, another depth, another schedule) needs the costs in the
machine's words. Each stage's forward and backward are fitted as layers x a per-layer cost,
plus what the first stage (embedding) and the last (final norm, head, loss) add. A stage's
action then costs its computation plus its rank's overhead around it: Python, and a send
and a receive post when its message crosses to another rank; its computation grows with
the microbatches its rank holds beyond what the run held (``pplab.calibration.variation``).
Messages take the measured link time; the step ends with the measured tail (flush and
optimizer), scaled by the layers the busiest rank updates.

The engine splits a backward (zero-bubble schedules) into I and W, and a stage that splits
pays for it: Python hooks in its forwards, and products W computes on its own. The per-layer
fit holds what a stage costs without splitting; a stage of a schedule that splits is charged
the engine's cost of splitting on top (``split_costs``, measured by
benchmarks/split_backward.py), and a run that split has it taken off before its costs are
fitted. The first stage, whose input is tokens, never splits: its I is almost nothing and its
W the whole backward.

    python -c "from pplab.calibration import calibration_for, cost_model_for; \
from pplab.runs.run_dirs import load_run; from pplab.schedules import build; \
print(cost_model_for(calibration_for(load_run('data/runs/1f1b-p2m8')), build('zb-h1', 2, 8)))"
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from pplab.calibration.model import Calibration
from pplab.engine.request import split_layers
from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    FULL_BACKWARD,
    Action,
    Schedule,
    message_into,
    message_of,
)
from pplab.sim.cost_model import CostModel

# What splitting costs in pplab's engine beside not splitting (``pplab.engine.stage``: on a
# splitting stage every Linear and LayerNorm keeps its input and its output gradient through
# Python hooks during F and I, and W multiplies them out one module at a time), per such
# module: F costs HOOK_COST more, and I + W costs SPLIT_FIXED plus SPLIT_PER_BYTE for every
# byte of one microbatch's activation more than B. Measured by benchmarks/split_backward.py on
# this lab's 2-core machine on 2026-12-08 (four runs of `--repeats 60`: the last stage of two
# and a middle stage of four of the toy GPT at pplab train's default sizes, predict_accuracy's
# and the bundled runs'; F + 18-30 us, I + W - B = 21-47 us + 0.95-1.24 ns per byte, per
# module; the figures are the runs' medians). They replace a ratio, I + W = 1.45 B, measured
# on 2026-12-02 at one size: the same runs gave (I + W) / B of 1.44-1.51 at the default
# sizes, 1.18-1.33 at predict_accuracy's and 1.12-1.21 at the bundled runs' (the hooks cost
# per module, the products grow with the activation, B with the activation times the
# width), and zb-h1 what-ifs from 1F1B at predict_accuracy's sizes came out 7-14 % slow.
# These are seconds of this machine: a much faster or slower one is charged this one's.
HOOK_COST = 28e-6
SPLIT_FIXED = 32e-6
SPLIT_PER_BYTE = 1.12e-9
MODULES_PER_LAYER = 6  # a Block's two LayerNorms and four Linears (pplab.engine.model)
MODULES_LAST = 2  # the last stage's final LayerNorm and head
# When a run sent no message (one stage), the bundled runs' activation stands in for its own.
ASSUMED_ACTIVATION_BYTES = 262_144
# I's share of I + W on a splitting stage, when the run did not split: 0.49-0.51 in zb-h1
# beside 1F1B at predict_accuracy's sizes (m = 2, 4, 8, 16) and at the default sizes, and
# 0.46-0.52 in benchmarks/split_backward.py, on 2026-12-08 (it was 0.46 on 2026-12-02).
INPUT_FRACTION = 0.50
FIRST_STAGE_INPUT = 0.0  # stage 0's I only keeps the output gradient for its W


def sends_remotely(schedule: Schedule, stage: int, kind: str) -> bool:
    """Whether ``kind`` on ``stage`` hands its result to a stage on another rank
    (``message_of``, the action language's rule)."""
    return message_of(Action(stage, kind, 0), schedule.stage_to_rank) is not None


def receives_remotely(schedule: Schedule, stage: int, kind: str) -> bool:
    """Whether ``kind`` on ``stage`` waits for a message from another rank."""
    return message_into(Action(stage, kind, 0), schedule.stage_to_rank) is not None


@dataclass(frozen=True)
class LayerFit:
    per_layer: dict[str, float]
    first_extra: dict[str, float]
    last_extra: dict[str, float]
    rule: str


@dataclass(frozen=True)
class SplitCost:
    forward: float  # what a splitting stage's F costs beyond a plain one's (s)
    backward: float  # what its I + W costs beyond B (s)


def split_costs(layers: int, last: bool, activation_bytes: int) -> SplitCost:
    """The engine's cost of splitting the backward of a stage of ``layers`` layers (and the
    head, when ``last``) whose microbatch activation is ``activation_bytes``."""
    modules = MODULES_PER_LAYER * layers + (MODULES_LAST if last else 0)
    size = activation_bytes or ASSUMED_ACTIVATION_BYTES
    return SplitCost(modules * HOOK_COST, modules * (SPLIT_FIXED + SPLIT_PER_BYTE * size))


def ran_split(costs: dict[str, float], stage: int) -> bool:
    """Whether a measured stage split its backward with the engine's hooks (the first stage
    runs I and W without them: its I only keeps the output gradient)."""
    return stage > 0 and BACKWARD_INPUT in costs and BACKWARD_WEIGHT in costs


def splitting_stages(schedule: Schedule) -> set[int]:
    """The stages whose backward ``schedule`` makes the engine split with its hooks: every
    stage but the first that runs an I (asynchronous schedules keep weight versions and
    never split)."""
    if schedule.is_async:
        return set()
    return {action.stage for order in schedule.actions.values() for action in order
            if action.kind == BACKWARD_INPUT and action.stage > 0}


def plain_costs(costs: dict[str, float], stage: int, split: SplitCost) -> dict[str, float]:
    """A measured stage's F and B as a stage that does not split would cost them."""
    plain = {}
    if FORWARD in costs:
        plain[FORWARD] = costs[FORWARD] - (split.forward if ran_split(costs, stage) else 0.0)
    if FULL_BACKWARD in costs:
        plain[FULL_BACKWARD] = costs[FULL_BACKWARD]
    elif BACKWARD_INPUT in costs and BACKWARD_WEIGHT in costs:
        both = costs[BACKWARD_INPUT] + costs[BACKWARD_WEIGHT]
        plain[FULL_BACKWARD] = both - (split.backward if ran_split(costs, stage) else 0.0)
    return {kind: max(value, 0.0) for kind, value in plain.items()}


def fit_layers(compute: dict[int, dict[str, float]], layer_split: tuple[int, ...],
               activation_bytes: int = 0) -> LayerFit:
    """Per-layer F and B, and the extras of the first and last stages, from stage costs as
    stages that do not split would cost them (``plain_costs``).

    With three or more stages all three are fitted (least squares); with two, the first
    stage's embedding is taken as free (a table lookup) so its cost is all layers; with one,
    the stage is all layers.
    """
    stages = sorted(compute)
    last = len(layer_split) - 1
    plain = {s: plain_costs(compute[s], s, split_costs(layer_split[s], s == last,
                                                        activation_bytes)) for s in stages}
    per_layer, first_extra, last_extra = {}, {}, {}
    for kind in (FORWARD, FULL_BACKWARD):
        rows = [(layer_split[s], s == 0, s == last, plain[s][kind])
                for s in stages if kind in plain[s]]
        if not rows:
            continue
        if len(rows) >= 3:
            matrix = np.array([[n, float(f), float(la)] for n, f, la, _ in rows])
            values = np.array([v for *_, v in rows])
            (a, e, h), *_ = np.linalg.lstsq(matrix, values, rcond=None)
        elif len(rows) == 2:
            (n0, _, _, v0), (n1, _, _, v1) = rows
            a, e, h = v0 / n0, 0.0, v1 - n1 * v0 / n0
        else:
            n, _, _, v = rows[0]
            a, e, h = v / n, 0.0, 0.0
        per_layer[kind], first_extra[kind], last_extra[kind] = max(float(a), 0.0), float(e), \
            float(h)
    kinds = {kind for costs in compute.values() for kind in costs}
    size = (f"{activation_bytes:,}-byte activations" if activation_bytes else
            f"an assumed {ASSUMED_ACTIVATION_BYTES:,}-byte activation (no message was sent)")
    per_module = (f"per Linear or LayerNorm of a stage that splits, F + {1e6 * HOOK_COST:.0f} us "
                  f"and I + W = B + {1e6 * SPLIT_FIXED:.0f} us + {1e9 * SPLIT_PER_BYTE:.2f} ns "
                  f"per byte of its {size}, as this engine measured (stage 0: I = 0, W = B)")
    rule = ""
    if FULL_BACKWARD in kinds and not {BACKWARD_INPUT, BACKWARD_WEIGHT} <= kinds:
        rule = f"I and W estimated from B: {per_module}, I = {INPUT_FRACTION} of I + W"
    elif FULL_BACKWARD not in kinds:
        rule = f"B and a plain F estimated from I and W: {per_module}"
    return LayerFit(per_layer, first_extra, last_extra, rule)


def _input_fraction(calibration: Calibration) -> float:
    """I / (I + W) on splitting stages: measured when the run split its backward."""
    measured = [c[BACKWARD_INPUT] / (c[BACKWARD_INPUT] + c[BACKWARD_WEIGHT])
                for stage, c in calibration.compute.items()
                if ran_split(c, stage) and c[BACKWARD_INPUT] + c[BACKWARD_WEIGHT] > 0]
    return statistics.median(measured) if measured else INPUT_FRACTION


def compute_costs(calibration: Calibration, schedule: Schedule,
                  layer_split: tuple[int, ...] | None = None) -> list[dict[str, float]]:
    """Every stage's dedicated F, B, I and W for ``schedule`` (seconds, no overhead).

    The run's own layout keeps what it measured, as a stage that does not split would cost
    it; a kind it did not run, and every stage of another layout, comes from the per-layer
    fit. A stage that ``schedule`` splits is then charged the engine's cost of splitting:
    its own measured I and W where the run split it too.
    """
    layers = tuple(layer_split or split_layers(sum(calibration.layer_split), schedule.num_stages))
    own = layers == calibration.layer_split
    last = len(layers) - 1
    fraction = _input_fraction(calibration)
    first_input = calibration.compute.get(0, {}).get(BACKWARD_INPUT, FIRST_STAGE_INPUT)
    splitting = splitting_stages(schedule)
    table = []
    for stage, count in enumerate(layers):
        def fitted(kind: str, stage: int = stage, count: int = count) -> float:
            value = calibration.per_layer.get(kind, 0.0) * count
            value += calibration.first_extra.get(kind, 0.0) if stage == 0 else 0.0
            value += calibration.last_extra.get(kind, 0.0) if stage == last else 0.0
            return max(value, 0.0)

        split = split_costs(count, stage == last, calibration.activation_bytes)
        measured = calibration.compute.get(stage, {}) if own else {}
        row = {FORWARD: fitted(FORWARD), FULL_BACKWARD: fitted(FULL_BACKWARD)}
        row.update(plain_costs(measured, stage, split))
        backward = row[FULL_BACKWARD]
        if stage == 0:
            row.update({BACKWARD_INPUT: first_input, BACKWARD_WEIGHT: backward})
        else:
            both = backward + split.backward
            row.update({BACKWARD_INPUT: fraction * both, BACKWARD_WEIGHT: (1 - fraction) * both})
        if ran_split(measured, stage) or stage == 0:
            row.update({kind: measured[kind] for kind in (BACKWARD_INPUT, BACKWARD_WEIGHT)
                        if kind in measured})
        if stage in splitting:
            row[FORWARD] += split.forward
        table.append(row)
    return table


def overhead_costs(calibration: Calibration, schedule: Schedule) -> list[dict[str, float]]:
    """A rank's time around each action outside computing and waiting, per stage and kind."""
    python = calibration.python_overhead
    fallback = statistics.median(python.values()) if python else 0.0
    borrowed = {BACKWARD_INPUT: FULL_BACKWARD, FULL_BACKWARD: BACKWARD_INPUT,
                BACKWARD_WEIGHT: None, FORWARD: None}
    table = []
    for stage in range(schedule.num_stages):
        row = {}
        for kind in COMPUTE_KINDS:
            own = python.get(kind, python.get(borrowed[kind] or "", fallback))
            row[kind] = (own + calibration.send_cost * sends_remotely(schedule, stage, kind)
                         + calibration.recv_cost * receives_remotely(schedule, stage, kind))
        table.append(row)
    return table


def link_latencies(calibration: Calibration, schedule: Schedule) -> list[float]:
    """The simulator's message time across each stage boundary of ``schedule``."""
    fits = calibration.links
    default = statistics.median([f.replay_latency for f in fits]) if fits else 0.0
    out = []
    for boundary in range(schedule.num_stages - 1):
        a, b = schedule.stage_to_rank[boundary], schedule.stage_to_rank[boundary + 1]
        both = [f.replay_latency for f in (calibration.link(a, b), calibration.link(b, a))
                if f is not None]
        out.append(statistics.mean(both) if both else default)
    return out


def tail_cost(calibration: Calibration, schedule: Schedule,
              layer_split: tuple[int, ...] | None = None) -> float:
    """The step's end after a rank's last action, for the layers the busiest rank updates."""
    layers = layer_split or split_layers(sum(calibration.layer_split), schedule.num_stages)
    per_rank = [0] * schedule.pp_size
    for stage, rank in enumerate(schedule.stage_to_rank):
        per_rank[rank] += layers[stage]
    base = calibration.optimizer if schedule.is_async else calibration.tail
    return base * max(per_rank) / max(calibration.tail_layers, 1)


def cost_model_for(calibration: Calibration, schedule: Schedule,
                   layer_split: tuple[int, ...] | None = None) -> CostModel:
    """The simulator's cost model for ``schedule``: every stage's action as its computation
    plus its overhead, the links' message times, and the step's tail as the optimizer."""
    compute = compute_costs(calibration, schedule, layer_split)
    overhead = overhead_costs(calibration, schedule)
    latencies = link_latencies(calibration, schedule)
    latency = max(latencies, default=0.0)
    growth = calibration.held_growth
    return CostModel(
        latency=latency,
        link_scale=tuple(x / latency for x in latencies) if latency > 0 else None,
        optimizer=tail_cost(calibration, schedule, layer_split),
        stage_costs=tuple(tuple(c[k] + o[k] for k in COMPUTE_KINDS)
                          for c, o in zip(compute, overhead, strict=True)),
        held_growth=tuple(growth.get(k, 0.0) for k in COMPUTE_KINDS) if growth else None,
        held_free=calibration.held_seen)
