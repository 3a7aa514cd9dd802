"""PipeDream and PipeDream-2BW: 1F1B that never flushes, with stashed weight versions.

Both keep the pipe full across training steps: the next step's forwards start while the
previous step's backwards are still running, so there is fill and drain only once per run.
The price is staleness, paid for with weight versions. A stage's *version* counts its
optimizer updates so far; a microbatch's backward always runs on the version its forward
used (weight stashing), and its gradient is applied to the newest weights.

* PipeDream (Narayanan et al., SOSP 2019, Sec. 3.3) updates a stage after every backward
  and runs each forward on the newest version. In 1F1B's steady state stage ``s`` of ``P``
  has ``P - s`` microbatches in flight, each on its own version, so it holds ``P - s``
  versions, and the update it applies was computed ``P - 1 - s`` updates ago: the paper's
  ``W(t+1) = W(t) - lr grad f(W_1(t-n+1), ..., W_n(t))`` for stages counted from 1. pplab
  has no vertical sync (the paper's option that makes every stage use the same version).
* PipeDream-2BW (Narayanan et al., ICML 2021, arXiv:2006.09503, Sec. 3.1) accumulates the
  gradients of a whole step of M microbatches, updates once per step, and runs every
  microbatch of step t, forward and backward, on the version of step t - 1 on *every* stage:
  ``W(t+1) = W(t) - lr grad f(W(t-1))``, a delay of one update, and two versions per stage
  (the newest and its shadow), as in the authors' Megatron code, where a microbatch's
  forward picks the older or newer buffer by the step it belongs to. It needs M >= P.

The versions are not stored in the order: ``weight_versions(schedule)`` derives them (for
2BW from ``params["version_lag_steps"]``), the simulator writes them into its events and the
engine records the version it really used. ``gradient_delays`` and ``versions_held`` are the
bookkeeping a learner can check against a timeline.

    pplab simulate --schedule pipedream --pp 4 --microbatches 4
"""

from __future__ import annotations

from collections import Counter

from pplab.schedules.actions import (
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    Schedule,
    weight_versions,
)
from pplab.schedules.registry import register
from pplab.schedules.simple import one_f_one_b_order

DEFAULT_STEPS = 3
TWO_BW_LAG_STEPS = 1  # 2BW's gradient is one version old on every stage


def _no_flush(name: str, pp_size: int, num_microbatches: int, num_steps: int,
              update_every: int, params: dict | None = None) -> Schedule:
    if num_steps < 1:
        raise ValueError(f"{name} needs at least 1 step, got {num_steps}")
    total = num_microbatches * num_steps
    orders = {s: one_f_one_b_order(s, pp_size, total) for s in range(pp_size)}
    return Schedule(
        orders, tuple(range(pp_size)), total, name=name, update_every=update_every,
        microbatches_per_step=num_microbatches,
        params={"num_steps": num_steps, **(params or {})},
    )


@register("pipedream", paper="PipeDream, Narayanan et al., SOSP 2019, doi:10.1145/3341301.3359646",
          asynchronous=True)
def pipedream(pp_size: int, num_microbatches: int, num_chunks: int = 1,
              num_steps: int = DEFAULT_STEPS) -> Schedule:
    """Asynchronous 1F1B, an update after every backward, weight stashing per microbatch."""
    return _no_flush("pipedream", pp_size, num_microbatches, num_steps, update_every=1)


@register("pipedream-2bw", paper="PipeDream-2BW, Narayanan et al., ICML 2021, arXiv:2006.09503",
          asynchronous=True)
def pipedream_2bw(pp_size: int, num_microbatches: int, num_chunks: int = 1,
                  num_steps: int = DEFAULT_STEPS) -> Schedule:
    """Asynchronous 1F1B, one update per step of M microbatches, on double-buffered weights.

    Every microbatch of step t runs on version t - 1: two versions per stage."""
    if num_microbatches < pp_size:
        raise ValueError(
            f"pipedream-2bw keeps two weight versions only with at least as many microbatches "
            f"per step as stages: {num_microbatches} microbatches < {pp_size} stages"
        )
    schedule = _no_flush("pipedream-2bw", pp_size, num_microbatches, num_steps,
                         update_every=num_microbatches,
                         params={"version_lag_steps": TWO_BW_LAG_STEPS})
    check_versions_ready(schedule)
    return schedule


def _walk(schedule: Schedule):
    """Every action of every stage in its rank's order, with the stage's updates before and
    after it (an update falls due after every ``update_every`` backwards)."""
    for actions in schedule.actions.values():
        done: Counter[int] = Counter()
        for action in (half for entry in actions for half in entry.sub_actions):
            before = done[action.stage] // schedule.update_every
            if action.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
                done[action.stage] += 1
            yield action, before, done[action.stage] // schedule.update_every


def check_versions_ready(schedule: Schedule) -> None:
    """Raise ValueError if a forward needs a version its stage has not produced yet."""
    if not schedule.is_async:
        return
    versions = weight_versions(schedule)
    for action, updates, _ in _walk(schedule):
        wanted = versions[(action.stage, action.microbatch)]
        if action.kind == FORWARD and wanted > updates:
            raise ValueError(f"{action} needs weight version {wanted}, but stage "
                             f"{action.stage} has made only {updates} updates by then")


def gradient_delays(schedule: Schedule) -> dict[int, list[int]]:
    """For each stage, how many updates old the gradient of each of its updates is.

    Update k turns version k into version k + 1; its gradients were computed on the version
    their microbatches ran with, v, so its delay is k - v (the oldest v, if they differ).
    Synchronous schedules have none: each step's one update uses that step's gradient.
    """
    if not schedule.is_async:
        return {s: [0] * schedule.num_steps for s in range(schedule.num_stages)}
    versions = weight_versions(schedule)
    delays: dict[int, list[int]] = {s: [] for s in range(schedule.num_stages)}
    oldest: dict[int, int] = {}
    for action, before, after in _walk(schedule):
        if action.kind not in (FULL_BACKWARD, BACKWARD_WEIGHT):
            continue
        version = versions[(action.stage, action.microbatch)]
        oldest[action.stage] = min(oldest.get(action.stage, version), version)
        if after > before:
            delays[action.stage].append(before - oldest.pop(action.stage))
    return delays


def steady_delay(schedule: Schedule, stage: int) -> int:
    """The delay of ``stage``'s updates once the pipe is full (the largest of them)."""
    return max(gradient_delays(schedule)[stage], default=0)


def versions_held(schedule: Schedule) -> dict[int, int]:
    """The most weight versions each stage holds at once: its live weights, plus every older
    version a microbatch still needs (in flight, or planned on it: 2BW's shadow copy)."""
    if not schedule.is_async:  # one version, updated after the flush when nothing is in flight
        return {s: 1 for s in range(schedule.num_stages)}
    versions = weight_versions(schedule)
    left: dict[int, Counter[int]] = {s: Counter() for s in range(schedule.num_stages)}
    for (stage, _), version in versions.items():
        left[stage][version] += 1
    most = {s: 1 for s in range(schedule.num_stages)}
    for action, _, live in _walk(schedule):
        stage = action.stage
        if action.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
            left[stage][versions[(stage, action.microbatch)]] -= 1
        held = {live} | {v for v, n in left[stage].items() if n > 0 and v < live}
        most[stage] = max(most[stage], len(held))
    return most
