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

The engine splits a backward (zero-bubble schedules) into I and W; when the run had only
full backwards B, I and W are estimated with the split this engine measured on this lab's
machine (see ``SPLIT_TOTAL``), and the first stage, whose input is tokens, has an I of
almost nothing and a W that is the whole backward.

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

# The engine's split backward against its full backward, on a stage that splits (every
# stage but the first): I + W costs SPLIT_TOTAL x B (I keeps every layer's output gradient
# through a Python hook, W computes the weight products from them one layer at a time) and
# I takes INPUT_FRACTION of that. Measured on this lab's 2-core machine on 2026-12-02, zb-h1
# beside 1f1b taking turns step by step (benchmarks/predict_accuracy.py --save, its sizes:
# d_model 128, 4 layers, 8 x 64 tokens per microbatch), on the last stage at m = 2, 4, 8, 16:
# (I + W) / B = 1.43, 1.50, 1.44, 1.50 and I / (I + W) = 0.47, 0.46, 0.46, 0.46.
# A run that split its backward measures its own.
SPLIT_TOTAL = 1.45
INPUT_FRACTION = 0.46
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


def _full_backward(costs: dict[str, float], first: bool) -> float | None:
    """A stage's B: measured, or from its I and W with the engine's split."""
    if FULL_BACKWARD in costs:
        return costs[FULL_BACKWARD]
    if BACKWARD_INPUT in costs and BACKWARD_WEIGHT in costs:
        both = costs[BACKWARD_INPUT] + costs[BACKWARD_WEIGHT]
        return both if first else both / SPLIT_TOTAL
    return None


def fit_layers(compute: dict[int, dict[str, float]], layer_split: tuple[int, ...]) -> LayerFit:
    """Per-layer F and B, and the extras of the first and last stages, from stage costs.

    With three or more stages all three are fitted (least squares); with two, the first
    stage's embedding is taken as free (a table lookup) so its cost is all layers; with one,
    the stage is all layers.
    """
    stages = sorted(compute)
    last = len(layer_split) - 1
    per_layer, first_extra, last_extra = {}, {}, {}
    for kind in (FORWARD, FULL_BACKWARD):
        rows = [(layer_split[s], s == 0, s == last,
                 compute[s][FORWARD] if kind == FORWARD else _full_backward(compute[s], s == 0))
                for s in stages]
        rows = [row for row in rows if row[3] is not None]
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
    rule = ""
    if FULL_BACKWARD in kinds and not {BACKWARD_INPUT, BACKWARD_WEIGHT} <= kinds:
        rule = (f"I and W estimated from B: I + W = {SPLIT_TOTAL} B, I = {INPUT_FRACTION} of "
                f"that (stage 0: I = 0, W = B), as this engine measured")
    elif FULL_BACKWARD not in kinds:
        rule = f"B estimated from I + W: B = (I + W) / {SPLIT_TOTAL} (stage 0: B = I + W)"
    return LayerFit(per_layer, first_extra, last_extra, rule)


def _input_fraction(calibration: Calibration) -> float:
    """I / (I + W) on splitting stages: measured when the run split its backward."""
    measured = [c[BACKWARD_INPUT] / (c[BACKWARD_INPUT] + c[BACKWARD_WEIGHT])
                for stage, c in calibration.compute.items()
                if stage > 0 and BACKWARD_INPUT in c and BACKWARD_WEIGHT in c
                and c[BACKWARD_INPUT] + c[BACKWARD_WEIGHT] > 0]
    return statistics.median(measured) if measured else INPUT_FRACTION


def compute_costs(calibration: Calibration, schedule: Schedule,
                  layer_split: tuple[int, ...] | None = None) -> list[dict[str, float]]:
    """Every stage's dedicated F, B, I and W for ``schedule`` (seconds, no overhead).

    The run's own layout keeps what it measured; a kind it did not run, and every stage of
    another layout, comes from the per-layer fit.
    """
    layers = tuple(layer_split or split_layers(sum(calibration.layer_split), schedule.num_stages))
    own = layers == calibration.layer_split
    last = len(layers) - 1
    fraction = _input_fraction(calibration)
    first_input = calibration.compute.get(0, {}).get(BACKWARD_INPUT, FIRST_STAGE_INPUT)
    table = []
    for stage, count in enumerate(layers):
        def fitted(kind: str, stage: int = stage, count: int = count) -> float:
            value = calibration.per_layer.get(kind, 0.0) * count
            value += calibration.first_extra.get(kind, 0.0) if stage == 0 else 0.0
            value += calibration.last_extra.get(kind, 0.0) if stage == last else 0.0
            return max(value, 0.0)

        forward, backward = fitted(FORWARD), fitted(FULL_BACKWARD)
        if stage == 0:
            row = {FORWARD: forward, FULL_BACKWARD: backward, BACKWARD_INPUT: first_input,
                   BACKWARD_WEIGHT: backward}
        else:
            row = {FORWARD: forward, FULL_BACKWARD: backward,
                   BACKWARD_INPUT: fraction * SPLIT_TOTAL * backward,
                   BACKWARD_WEIGHT: (1 - fraction) * SPLIT_TOTAL * backward}
        if own:
            row.update(calibration.compute.get(stage, {}))
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
