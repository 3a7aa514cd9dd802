"""Enumerate pp x tp x dp, microbatch size, schedule and recomputation; keep what fits; rank it.

What it teaches: of the thousands of ways to spread a model over a cluster, the rules leave
dozens and memory a handful; the simulator then orders those by step time. Every (pp, tp,
dp) of the GPU count is tried; a grid that breaks a rule is kept as an ``Exclusion`` with its
reason, a layout that fits under no recomputation level as ``rejected``.

Ranking stays cheap: a layout's lower bound (its busiest rank's work plus the dp all-reduce)
is known without simulating, so layouts are timed best bound first, and the search stops once
``max_candidates`` timed layouts all beat every remaining bound: the top of the ranking is
exact, not sampled. Among recomputation levels only the lightest that fits is kept:
recomputing more only lengthens the backward.

    python -c "from pplab.planner import *; r = plan(PRESET_MODELS['gpt3-175b'],
    PRESET_CLUSTERS['dgx-a100-80gb'].with_nodes(512), 1536); print(r.best.describe())"
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pplab import limits
from pplab.planner.estimate import (
    SCHEDULES,
    estimate_layout,
    grid_problem,
    interleaving_problem,
    layout_problem,
    time_layout,
)
from pplab.planner.flops import RECOMPUTE
from pplab.planner.results import Candidate, Exclusion, Layout, json_safe
from pplab.planner.specs import (
    GIB,
    ClusterSpec,
    ModelSpec,
    check_global_batch,
    check_whole,
)

MICROBATCH_SIZES = (1, 2, 4, 8)
DEFAULT_MAX_CANDIDATES = 20


class NoFeasiblePlan(ValueError):
    """No layout fits: the message says which rule bites or how much memory is missing.

    ``closest`` is the layout needing the least memory (None when no grid is possible at
    all) and ``result`` the plan, to show what was tried.
    """

    def __init__(self, message: str, closest: Candidate | None, result: PlanResult):
        super().__init__(message)
        self.closest = closest
        self.result = result


def rank(model: ModelSpec, cluster: ClusterSpec, global_batch: int,
         candidates: Iterable[Candidate], limit: int | None) -> tuple[list[Candidate], int]:
    """The ``limit`` fastest of ``candidates`` (all when None), exactly; and how many were timed."""
    ranked: list[Candidate] = []
    keys: list[tuple] = []
    timed = 0
    for candidate in sorted(candidates, key=lambda c: (c.lower_bound, c.peak_memory)):
        if limit and len(ranked) >= limit and candidate.lower_bound > ranked[-1].step_s:
            break
        candidate = time_layout(model, cluster, global_batch, candidate)
        timed += 1
        layout = candidate.layout
        key = (candidate.step_s, candidate.peak_memory, layout.pp, layout.tp,
               layout.microbatch_size, layout.schedule, layout.num_chunks)
        where = bisect.bisect(keys, key)
        keys.insert(where, key)
        ranked.insert(where, candidate)
        if limit:
            del keys[limit:], ranked[limit:]
    return ranked, timed


@dataclass
class PlanResult:
    """What ``plan`` found: the ranking, every layout that fits, what did not and why."""

    model: ModelSpec
    cluster: ClusterSpec
    global_batch: int
    ranked: tuple[Candidate, ...]
    feasible: tuple[Candidate, ...]  # every layout that fits; only the ranked ones are timed
    rejected: tuple[Candidate, ...]  # layouts that fit under no requested recomputation
    excluded: tuple[Exclusion, ...]
    options: dict[str, object] = field(default_factory=dict)
    timed: int = 0

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    def grids(self) -> list[tuple[int, int, int]]:
        """Every (pp, tp, dp) that was considered, valid or not, in order."""
        seen = {c.layout.grid for c in self.feasible + self.rejected}
        return sorted(seen | {e.grid for e in self.excluded})

    def best_for(self, grid: Sequence[int]) -> Candidate | None:
        """The fastest layout of ``grid`` that fits, timed; None when none fits."""
        mine = [c for c in self.feasible if c.layout.grid == tuple(grid)]
        ranked, _ = rank(self.model, self.cluster, self.global_batch, mine, 1)
        return ranked[0] if ranked else None

    def smallest_for(self, grid: Sequence[int]) -> Candidate | None:
        """The layout of ``grid`` that needs the least memory, fitting or not."""
        mine = [c for c in self.feasible + self.rejected if c.layout.grid == tuple(grid)]
        return min(mine, key=lambda c: c.peak_memory, default=None)

    def as_dict(self, limit: int | None = None) -> dict[str, object]:
        ranked = self.ranked if limit is None else self.ranked[:limit]
        return json_safe({
            "model": self.model.as_dict(),
            "cluster": self.cluster.as_dict(),
            "global_batch": self.global_batch,
            "options": self.options,
            "ranked": [c.as_dict() for c in ranked],
            "feasible": len(self.feasible),
            "timed": self.timed,
            "rejected": len(self.rejected),
            "excluded": [e.as_dict() for e in self.excluded],
        })


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def grids(model: ModelSpec, cluster: ClusterSpec, global_batch: int | None,
          pp_sizes: Sequence[int] | None = None, tp_sizes: Sequence[int] | None = None,
          ) -> Iterator[tuple[int, int, int, str | None]]:
    """Every (pp, tp, dp) that uses all the cluster's GPUs, with the rule it breaks (None when
    it breaks none; ``grid_problem``), pp and tp from ``pp_sizes``/``tp_sizes`` or every
    divisor of the GPU count. ``plan`` tries these; with ``global_batch`` None the batch's
    split into replicas is left unchecked."""
    gpus = cluster.num_gpus
    divisors = _divisors(gpus)
    for pp in pp_sizes or divisors:
        for tp in tp_sizes or divisors:
            if (gpus // pp) % tp:
                continue
            dp = gpus // (pp * tp)
            yield pp, tp, dp, grid_problem(model, cluster, global_batch, pp, tp, dp)


def valid_grids(model: ModelSpec, cluster: ClusterSpec,
                global_batch: int | None = None) -> list[tuple[int, int, int]]:
    """The (pp, tp, dp) the planner accepts for ``model`` on ``cluster``, in order: every GPU
    used, tp inside a node dividing the heads, pp dividing the layers and within the
    planner's depth, and (unless ``global_batch`` is None) dp dividing the batch."""
    return [(pp, tp, dp) for pp, tp, dp, problem in grids(model, cluster, global_batch)
            if problem is None]


def microbatch_options(global_batch: int, dp: int,
                       sizes: Sequence[int] = MICROBATCH_SIZES) -> list[int]:
    """The microbatch sizes of ``sizes`` that cut each replica's share of the batch evenly
    (none when dp does not divide the batch)."""
    if global_batch % dp:
        return []
    return [b for b in sizes if (global_batch // dp) % b == 0]


def chunk_options(model: ModelSpec, pp: int) -> list[int]:
    """The chunks per rank v that interleaved 1F1B can run on pp ranks of ``model`` (2 to
    ``MAX_PLANNED_CHUNKS``, the planner's own range; ``interleaving_problem``)."""
    return [v for v in range(2, limits.MAX_PLANNED_CHUNKS + 1)
            if interleaving_problem(model, pp, v) is None]


def _choices(what: str, values, allowed: Sequence | None = None, most: int = 0) -> tuple:
    """``values`` as a tuple, each one of ``allowed`` (or a whole number up to ``most``)."""
    values = tuple(values)
    if not values:
        raise ValueError(f"no {what} to plan with")
    for value in values:
        if allowed is not None and value not in allowed:
            raise ValueError(f"{what} {value!r} is not one of {', '.join(map(str, allowed))}")
        if allowed is None:
            check_whole(what, value, most)
    return values


def _layouts(model: ModelSpec, global_batch: int, pp: int, tp: int, dp: int,
             schedules, microbatch_sizes, chunks, sequence_parallel):
    """Every (microbatch size, schedule, chunks) of one valid grid, recomputation left open."""
    for b in microbatch_options(global_batch, dp, microbatch_sizes):
        m = global_batch // dp // b
        names = schedules
        if pp == 1 and any(name != "interleaved-1f1b" for name in schedules):
            names = ("1f1b",)  # one stage: every schedule runs the microbatches one by one
        for name in names:
            if name != "interleaved-1f1b":
                yield Layout(pp, tp, dp, b, m, name, 1, "none", sequence_parallel)
                continue
            for v in (chunks if chunks is not None else range(2, limits.MAX_PLANNED_CHUNKS + 1)):
                yield Layout(pp, tp, dp, b, m, name, v, "none", sequence_parallel)


def plan(model: ModelSpec, cluster: ClusterSpec, global_batch: int, *,
         schedules: Sequence[str] = SCHEDULES, recompute: Sequence[str] = RECOMPUTE,
         microbatch_sizes: Sequence[int] = MICROBATCH_SIZES, chunks: Sequence[int] | None = None,
         pp_sizes: Sequence[int] | None = None, tp_sizes: Sequence[int] | None = None,
         sequence_parallel: bool = True,
         max_candidates: int | None = DEFAULT_MAX_CANDIDATES) -> PlanResult:
    """Rank the layouts of ``model`` on ``cluster`` that fit in memory, fastest first.

    ``pp_sizes``/``tp_sizes`` restrict the grid (None: every divisor of the GPU count);
    ``chunks`` the interleaving depths (None: 2 to 8); ``max_candidates`` how many ranked
    layouts to return (None: all, timing every one that fits). Raise ValueError, one line,
    for bad options, and ``NoFeasiblePlan`` (a ValueError) naming the rule or the memory that
    bites when nothing fits.
    """
    check_global_batch(global_batch)
    schedules = _choices("schedule", schedules, SCHEDULES)
    recompute = _choices("recompute", recompute, RECOMPUTE)
    # A microbatch is part of the global batch; a chunk holds at least one layer.
    microbatch_sizes = _choices("microbatch size", microbatch_sizes,
                                most=limits.MAX_PLANNED_GLOBAL_BATCH)
    chunks = None if chunks is None else _choices("chunks", chunks,
                                                  most=limits.MAX_PLANNED_LAYERS)
    if max_candidates is not None:
        check_whole("max candidates", max_candidates, limits.MAX_PLAN_TOP)
    gpus = cluster.num_gpus
    for what, sizes in (("pp", pp_sizes), ("tp", tp_sizes)):
        for size in sizes or ():
            check_whole(what, size, limits.MAX_PLANNED_GPUS)
            if gpus % size:
                raise ValueError(f"{what}={size} does not divide the cluster's {gpus} GPUs")
    feasible, rejected, excluded = [], [], []
    for pp, tp, dp, problem in grids(model, cluster, global_batch, pp_sizes, tp_sizes):
        if problem:
            excluded.append(Exclusion(pp, tp, dp, problem))
            continue
        reasons = []
        for layout in _layouts(model, global_batch, pp, tp, dp, schedules,
                               microbatch_sizes, chunks, bool(sequence_parallel)):
            problem = layout_problem(model, cluster, global_batch, layout)
            if problem:
                reasons.append(problem)
                continue
            lightest = None
            for level in recompute:  # the lightest level that fits; more only costs time
                candidate = estimate_layout(model, cluster, global_batch,
                                            _with(layout, level))
                lightest = candidate if lightest is None or \
                    candidate.peak_memory < lightest.peak_memory else lightest
                if candidate.fits:
                    feasible.append(candidate)
                    break
            else:
                rejected.append(lightest)
        if not any(c.layout.grid == (pp, tp, dp) for c in feasible + rejected):
            excluded.append(Exclusion(pp, tp, dp, reasons[0] if reasons else
                                      "no microbatch size divides the batch per replica"))
    ranked, timed = rank(model, cluster, global_batch, feasible, max_candidates)
    options = {"schedules": list(schedules), "recompute": list(recompute),
               "microbatch_sizes": list(microbatch_sizes),
               "chunks": None if chunks is None else list(chunks),
               "pp_sizes": None if pp_sizes is None else list(pp_sizes),
               "tp_sizes": None if tp_sizes is None else list(tp_sizes),
               "sequence_parallel": bool(sequence_parallel), "max_candidates": max_candidates}
    result = PlanResult(model, cluster, global_batch, tuple(ranked), tuple(feasible),
                        tuple(rejected), tuple(excluded), options, timed)
    if not ranked:
        raise _nothing_fits(result)
    return result


def _with(layout: Layout, recompute: str) -> Layout:
    return Layout(layout.pp, layout.tp, layout.dp, layout.microbatch_size,
                  layout.num_microbatches, layout.schedule, layout.num_chunks, recompute,
                  layout.sequence_parallel)


def _nothing_fits(result: PlanResult) -> NoFeasiblePlan:
    """The one line that says why no layout is left, with the numbers."""
    limit = result.cluster.memory_gib
    if result.rejected:
        closest = min(result.rejected, key=lambda c: c.peak_memory)
        layout = closest.layout
        return NoFeasiblePlan(
            f"nothing fits: the smallest memory need is {closest.peak_memory / GIB:.1f} GiB "
            f"per GPU (pp={layout.pp} tp={layout.tp} dp={layout.dp}, b={layout.microbatch_size}"
            f", {layout.schedule} with {layout.recompute} recompute) > {limit:g} GiB", closest,
            result)
    reasons = list(dict.fromkeys(e.reason for e in result.excluded))
    more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return NoFeasiblePlan(
        f"no (pp, tp, dp) of {result.cluster.num_gpus} GPUs can run {result.model.name}: "
        + "; ".join(reasons[:3]) + more, None, result)
