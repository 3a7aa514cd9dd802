"""Cutting a model into stages: what each stage costs, what a split's step takes, the best split.

What it teaches: layers, the embedding and the head are not equal. A stage is a contiguous
run of layers (``pplab train --split 3,3,2``); the first stage also runs the embedding, the
last the final norm, the head and the loss. Every stage does one forward and one backward per
microbatch, so the slowest stage sets the pace of the whole pipe, and the fill and drain add
the rest. ``best_split`` searches every way to cut L layers into p stages for the shortest
simulated step (1F1B or GPipe, free communication). The costs come in the words of
``pplab.calibration``: a per-layer F and B plus what the first and the last stage add.

The search is exact but does not simulate every split. No step of a split is shorter than
the largest, over its stages k, of ``m (F_k + B_k)`` plus the F + B of the stages before k:
microbatch 0's forwards reach stage k through them, and the last gradient goes back through
them after k's own work. Splits are simulated in the order of that bound, and the search
stops once the bound reaches the best step found.

    python -c "from pplab.teaching.stage_split import *; c = LayerCosts(1, 2, 0, 0, 2, 2); \
print(best_split(c, 8, 3, 8))"
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from pplab.calibration import calibration_for
from pplab.calibration.model import Calibration
from pplab.engine.request import split_layers
from pplab.engine.train_config import parse_split
from pplab.limits import MAX_COST, MAX_SPLITS_SEARCHED, check_finite_number
from pplab.runs.resources import bundled_runs_dir
from pplab.runs.run_dirs import load_run
from pplab.schedules import FORWARD, FULL_BACKWARD, build
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

LESSON_RUN = "1f1b-p4m8"  # the bundled run lesson 5 calibrates its costs from
SCHEDULES = ("1f1b", "gpipe")  # one stage per rank, F and full B: what the search prices
_RELATIVE = 1e-9  # simulated times are sums of floats


@dataclass(frozen=True)
class LayerCosts:
    """One microbatch's forward (F) and backward (B) per layer, and what the ends add.

    ``embed_*`` is what stage 0 adds (the embedding), ``head_*`` what the last stage adds
    (final norm, head and loss); both may be negative when fitted from a noisy run, and a
    stage's total is never taken below zero (as ``pplab.calibration.costs`` does).
    """

    layer_f: float
    layer_b: float
    embed_f: float = 0.0
    embed_b: float = 0.0
    head_f: float = 0.0
    head_b: float = 0.0
    unit: str = "cost units"

    def __post_init__(self) -> None:
        for name in ("layer_f", "layer_b"):
            check_finite_number(f"{name} cost", getattr(self, name), MAX_COST)
        for name in ("embed_f", "embed_b", "head_f", "head_b"):
            value = getattr(self, name)
            check_finite_number(f"{name} cost", abs(value), MAX_COST)
        if self.layer_f + self.layer_b <= 0:
            raise ValueError("a layer must cost something (layer_f + layer_b > 0)")

    @classmethod
    def from_calibration(cls, calibration: Calibration) -> LayerCosts:
        """The fitted per-layer costs and extras of a calibrated run, in seconds."""
        def get(table: dict, kind: str) -> float:
            return float(table.get(kind, 0.0))
        return cls(get(calibration.per_layer, FORWARD), get(calibration.per_layer, FULL_BACKWARD),
                   get(calibration.first_extra, FORWARD),
                   get(calibration.first_extra, FULL_BACKWARD),
                   get(calibration.last_extra, FORWARD), get(calibration.last_extra, FULL_BACKWARD),
                   unit="s")

    def with_head(self, layers_worth: float) -> LayerCosts:
        """These costs with the head dearer by ``layers_worth`` layers (a what-if: a larger
        vocabulary makes the logit layer and the loss cost more, in the layers' F:B ratio)."""
        return replace(self, head_f=self.head_f + layers_worth * self.layer_f,
                       head_b=self.head_b + layers_worth * self.layer_b)

    def in_layers(self) -> tuple[float, float]:
        """What the embedding and the head add (F + B), in layers' worth of F + B."""
        layer = self.layer_f + self.layer_b
        return (self.embed_f + self.embed_b) / layer, (self.head_f + self.head_b) / layer

    def stage_costs(self, split: Sequence[int]) -> list[tuple[float, float]]:
        """(F, B) of one microbatch on every stage of ``split`` (layers per stage)."""
        last = len(split) - 1
        out = []
        for stage, layers in enumerate(split):
            forward = layers * self.layer_f + (self.embed_f if stage == 0 else 0.0) \
                + (self.head_f if stage == last else 0.0)
            backward = layers * self.layer_b + (self.embed_b if stage == 0 else 0.0) \
                + (self.head_b if stage == last else 0.0)
            out.append((max(forward, 0.0), max(backward, 0.0)))
        return out

    def stage_times(self, split: Sequence[int]) -> list[float]:
        """F + B of one microbatch on every stage: the work a stage repeats m times."""
        return [f + b for f, b in self.stage_costs(split)]


def count_splits(n_layers: int, num_stages: int) -> int:
    """Ways to cut ``n_layers`` into ``num_stages`` contiguous runs of at least one layer."""
    return math.comb(n_layers - 1, num_stages - 1) if 1 <= num_stages <= n_layers else 0


def all_splits(n_layers: int, num_stages: int) -> Iterator[tuple[int, ...]]:
    """Every split, in lexicographic order of its cut points."""
    for cuts in itertools.combinations(range(1, n_layers), num_stages - 1):
        bounds = (0, *cuts, n_layers)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(num_stages))


def read_split(text: str, n_layers: int, num_stages: int) -> tuple[int, ...]:
    """``"3,3,2"`` as layer counts, checked as ``pplab train --split`` checks it; an empty
    text is pplab's default split (earlier stages take the remainder). ValueError if bad."""
    if not str(text).strip():
        return split_layers(n_layers, num_stages)
    return split_layers(n_layers, num_stages, parse_split(str(text).strip().replace(" ", "")))


def _check_search(n_layers: int, num_stages: int, num_microbatches: int, schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"the split search prices {' and '.join(SCHEDULES)}, not {schedule!r}")
    if num_stages < 1 or n_layers < num_stages:
        raise ValueError(f"{num_stages} stages need at least {num_stages} layers; the model "
                         f"has {n_layers}")
    if num_microbatches < 1:
        raise ValueError(f"need at least 1 microbatch, got {num_microbatches}")
    if count_splits(n_layers, num_stages) > MAX_SPLITS_SEARCHED:
        raise ValueError(f"{n_layers} layers on {num_stages} stages can be cut "
                         f"{count_splits(n_layers, num_stages):,} ways; the search takes up "
                         f"to {MAX_SPLITS_SEARCHED:,}: fewer layers or stages")


def cost_model(costs: LayerCosts, split: Sequence[int]) -> CostModel:
    """The simulator's costs for ``split``: every stage's own F and B, free messages.

    I and W are set to halves of B only because a CostModel row needs them: 1F1B and GPipe
    never run them."""
    return CostModel(stage_costs=tuple((f, b, b / 2, b / 2) for f, b in costs.stage_costs(split)))


def simulate_split(costs: LayerCosts, split: Sequence[int], num_microbatches: int,
                   schedule: str = "1f1b"):
    """Events and metrics of one step of ``split`` (predicted, in the costs' unit)."""
    _check_search(sum(split), len(split), num_microbatches, schedule)
    events = simulate(build(schedule, len(split), num_microbatches), cost_model(costs, split))
    return events, metrics(events, ranks=range(len(split)))


@lru_cache(maxsize=4096)
def step_time(costs: LayerCosts, split: tuple[int, ...], num_microbatches: int,
              schedule: str = "1f1b") -> float:
    """The simulated step (makespan) of ``split``; cached, since searches ask again."""
    return float(simulate_split(costs, split, num_microbatches, schedule)[1]["makespan"])


def lower_bound(times: Sequence[float], num_microbatches: int) -> float:
    """No schedule with one stage per rank runs a step shorter than this.

    Stage k does m (F_k + B_k) of its own work in turn; before its first forward microbatch
    0 passes every stage before it, and after its last backward the gradient passes them
    again. Those two chains together are the F + B of the stages before k."""
    before, bound = 0.0, 0.0
    for time in times:
        bound = max(bound, before + num_microbatches * time)
        before += time
    return bound


def _within(costs: LayerCosts, n_layers: int, num_stages: int,
            cap: float) -> Iterator[tuple[int, ...]]:
    """Every split whose stages each take at most ``cap`` per microbatch (F + B)."""
    def grow(prefix: tuple[int, ...], left: int) -> Iterator[tuple[int, ...]]:
        stage = len(prefix)
        if stage == num_stages - 1:
            split = (*prefix, left)
            if costs.stage_times(split)[-1] <= cap:
                yield split
            return
        for layers in range(1, left - (num_stages - 1 - stage) + 1):
            trial = (*prefix, layers) + (1,) * (num_stages - 1 - stage)
            if costs.stage_times(trial)[stage] > cap:
                break  # a stage only gets dearer with more layers
            yield from grow((*prefix, layers), left - layers)
    yield from grow((), n_layers)


@dataclass(frozen=True)
class BestSplit:
    """The split with the shortest simulated step, and how the search got there."""

    split: tuple[int, ...]
    step_time: float
    stage_times: tuple[float, ...]
    simulated: int  # splits the search simulated
    splits: int  # ways to cut the layers there are

    @property
    def bottleneck(self) -> float:
        return max(self.stage_times)


def _ranked(costs: LayerCosts, splits: Sequence[tuple[int, ...]],
            num_microbatches: int) -> list[tuple[float, float, tuple[int, ...]]]:
    ranked = []
    for split in splits:
        times = costs.stage_times(split)
        ranked.append((lower_bound(times, num_microbatches), max(times), split))
    return sorted(ranked)


def best_split(costs: LayerCosts, n_layers: int, num_stages: int, num_microbatches: int,
               schedule: str = "1f1b") -> BestSplit:
    """The split of ``n_layers`` into ``num_stages`` whose simulated step is shortest.

    Exact over all splits (see the module docstring); among splits within float rounding of
    the best, the one with the lowest bound, then the fastest slowest stage, comes first."""
    _check_search(n_layers, num_stages, num_microbatches, schedule)
    even = split_layers(n_layers, num_stages)
    best, best_time = even, step_time(costs, even, num_microbatches, schedule)
    # A split that beats the even one needs every stage under best_time / m (the bound).
    cap = best_time / num_microbatches * (1 + _RELATIVE)
    candidates = _ranked(costs, list(_within(costs, n_layers, num_stages, cap)),
                         num_microbatches)
    simulated = 1
    for bound, _, split in candidates:
        if bound >= best_time * (1 - _RELATIVE):
            break
        time = step_time(costs, split, num_microbatches, schedule)
        simulated += split != even
        if time < best_time * (1 - _RELATIVE):
            best, best_time = split, time
    return BestSplit(best, best_time, tuple(costs.stage_times(best)), simulated,
                     count_splits(n_layers, num_stages))


def best_bottlenecks(costs: LayerCosts, n_layers: int, num_stages: int,
                     num_microbatches: int, schedule: str = "1f1b") -> list[float]:
    """The slowest-stage times of every split whose step ties the best: one value when the
    best step has one bottleneck, more when splits with other bottlenecks tie it (fill and
    drain can make up for a slower stage)."""
    best = best_split(costs, n_layers, num_stages, num_microbatches, schedule)
    cap = best.step_time / num_microbatches * (1 + _RELATIVE)
    found: set[float] = set()
    for bound, slowest, split in _ranked(costs, list(_within(costs, n_layers, num_stages, cap)),
                                         num_microbatches):
        if bound > best.step_time * (1 + _RELATIVE):
            break
        if any(abs(slowest - x) <= _RELATIVE * max(1.0, x) for x in found):
            continue
        time = step_time(costs, split, num_microbatches, schedule)
        if time <= best.step_time * (1 + _RELATIVE):
            found.add(slowest)
    return sorted(found)


def fastest_with_bottleneck(costs: LayerCosts, n_layers: int, num_stages: int,
                            num_microbatches: int, bottleneck: float,
                            schedule: str = "1f1b") -> tuple[tuple[int, ...], float] | None:
    """The shortest simulated step among splits whose slowest stage takes ``bottleneck``
    (F + B per microbatch, up to float rounding), with its split; None if no split does."""
    _check_search(n_layers, num_stages, num_microbatches, schedule)
    tolerance = _RELATIVE * max(1.0, abs(bottleneck))
    exact = [split for split in _within(costs, n_layers, num_stages, bottleneck + tolerance)
             if max(costs.stage_times(split)) >= bottleneck - tolerance]
    found: tuple[tuple[int, ...], float] | None = None
    for bound, _, split in _ranked(costs, exact, num_microbatches):
        if found is not None and bound >= found[1] * (1 - _RELATIVE):
            break
        time = step_time(costs, split, num_microbatches, schedule)
        if found is None or time < found[1] * (1 - _RELATIVE):
            found = (split, time)
    return found


def min_bottleneck(costs: LayerCosts, n_layers: int, num_stages: int) -> float:
    """The fastest slowest stage any split reaches (F + B per microbatch): what balancing
    the stages alone, ignoring the fill and the drain, aims for. A small dynamic programme
    over (stages cut so far, layers used), as PipeDream's partitioner balances stages."""
    if num_stages < 1 or n_layers < num_stages:
        raise ValueError(f"{num_stages} stages need at least {num_stages} layers; the model "
                         f"has {n_layers}")
    last = num_stages - 1

    def stage_time(stage: int, layers: int) -> float:
        split = [1] * num_stages
        split[stage] = layers
        return costs.stage_times(split)[stage]

    # slowest[used] = the best slowest stage over the first stages holding `used` layers
    slowest = {0: 0.0}
    for stage in range(num_stages):
        later = last - stage  # stages still to come, one layer each at least
        totals = [n_layers] if stage == last else range(stage + 1, n_layers - later + 1)
        slowest = {total: min(max(before, stage_time(stage, total - used))
                              for used, before in slowest.items() if total - used >= 1)
                   for total in totals}
    return slowest[n_layers]


def bundled_costs(run_name: str = LESSON_RUN) -> tuple[LayerCosts, Calibration]:
    """The per-layer costs and extras fitted from a bundled run, with its calibration (read
    from the run's calibration.json, or fitted now without writing into the package)."""
    calibration = calibration_for(load_run(bundled_runs_dir() / run_name), save=False)
    return LayerCosts.from_calibration(calibration), calibration
