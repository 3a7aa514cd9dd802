"""Several training steps of a synchronous schedule, and where post-validation fits in them.

What it teaches: a synchronous schedule describes one step; training runs it again and again,
with an optimizer step between. Two things decide how far the steps can overlap:

* ``repeat_steps`` lays K steps end to end (microbatch ``mb`` of step k is ``k*m + mb``), so
  the one walk of a schedule (``pplab.sim``) runs all of them at once; what separates the
  steps is the optimizer step, which the walk places.
* With a barrier before the optimizer step (global gradient-norm clipping, the NaN/Inf
  check: an all-reduce over every stage) no rank starts step k+1 before the slowest ends
  step k. The zero-bubble paper (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 4) replaces
  it with a post-validation: a partially reduced state passed from rank 0 to rank P-1, an
  optimistic update on each rank as soon as its own W's are done, and the fully reduced
  state passed back from rank P-1 "during the warm-up phase of the next iteration". Each
  rank validates before its first backward of the next step (the reference code places it
  before the forward of microbatch 2(P-1-r), the end of ZB-H2's warm-up);
  ``validation_points`` says where, for any order.

    python -c "from pplab.schedules import build; from pplab.schedules.steps import \
validation_points; print(validation_points(build('zb-h2', 4, 8)))"
"""

from __future__ import annotations

from pplab import limits
from pplab.schedules.actions import FORWARD, Action, AnyAction, OverlapPair, Schedule

OPTIMIZER_SYNCS = ("barrier", "post")


def _shift(entry: AnyAction, offset: int) -> AnyAction:
    if isinstance(entry, OverlapPair):
        return OverlapPair(_shift(entry.forward, offset), _shift(entry.backward, offset))
    return Action(entry.stage, entry.kind, entry.microbatch + offset)


def repeat_steps(schedule: Schedule, num_steps: int) -> Schedule:
    """``num_steps`` copies of a one-step synchronous ``schedule``, one after the other on
    every rank, microbatch ids offset by the step: one schedule of ``num_steps`` steps."""
    if schedule.is_async:
        raise ValueError(f"{schedule.name} is asynchronous: its own schedule already holds "
                         f"its {schedule.num_steps} steps")
    if schedule.num_steps != 1:
        raise ValueError(f"repeat a one-step schedule; {schedule.name} already has "
                         f"{schedule.num_steps} steps")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"need at least 1 step, got {num_steps!r}")
    # Bounded before anything is built: K copies of every rank's order are K times the actions.
    per_step = sum(len(order) for order in schedule.actions.values())
    if per_step * num_steps > limits.MAX_ACTIONS:
        raise ValueError(f"{num_steps:,} steps of {schedule.name} are {per_step * num_steps:,} "
                         f"actions; pplab handles at most {limits.MAX_ACTIONS:,} (pplab.limits)")
    m = schedule.num_microbatches
    actions = {rank: tuple(_shift(entry, step * m) for step in range(num_steps)
                           for entry in order)
               for rank, order in schedule.actions.items()}
    return Schedule(actions, schedule.stage_to_rank, m * num_steps, name=schedule.name,
                    microbatches_per_step=m, params=dict(schedule.params))


def _plain(entry: AnyAction) -> Action | None:
    """The entry as one forward, or None when it is anything else (a pair included)."""
    return entry if isinstance(entry, Action) and entry.kind == FORWARD else None


def validation_points(schedule: Schedule) -> dict[int, int]:
    """Per rank, the position in its one-step order before which it validates the previous
    step's optimistic update (post-validation); the last rank validates at once, since the
    reduction ends there.

    A rank may run forwards of the next step first, on weights not yet validated: the
    leading forwards of its order whose input comes from a forward also run before its own
    rank validates (or from the tokens). Nothing else may wait for a validation, so every
    validation can be reached and a rollback redoes only those forwards. For ZB-H2 at
    P=4, M=8 that is 7, 5, 3 forwards on ranks 0, 1, 2.
    """
    if schedule.is_async:
        raise ValueError(f"{schedule.name} is asynchronous: it has no optimizer step to "
                         f"validate")
    leading = {}
    for rank, order in schedule.actions.items():
        count = 0
        while count < len(order) and _plain(order[count]) is not None:
            count += 1
        leading[rank] = count
    # Shrink each rank's prefix until every forward in it is fed from inside the prefixes.
    changed = True
    while changed:
        changed = False
        before = {(a.stage, a.microbatch) for rank, order in schedule.actions.items()
                  for a in order[:leading[rank]]}
        for rank, order in schedule.actions.items():
            for position in range(leading[rank]):
                action = order[position]
                if action.stage > 0 and (action.stage - 1, action.microbatch) not in before:
                    leading[rank] = position
                    changed = True
                    break
    last = max(schedule.actions)
    return {rank: 0 if rank == last else count for rank, count in leading.items()}


def pre_validation_forwards(schedule: Schedule) -> dict[int, tuple[Action, ...]]:
    """The forwards each rank runs before it validates: redone after a rollback."""
    points = validation_points(schedule)
    return {rank: tuple(order[:points[rank]]) for rank, order in schedule.actions.items()}


def check_one_stage_per_rank(schedule: Schedule) -> None:
    """The engine's post-validation passes the state along ranks that each hold one stage."""
    if schedule.is_async:
        raise ValueError(f"{schedule.name} is asynchronous: it updates each stage on its own "
                         f"clock, with no optimizer step to validate")
    if schedule.stage_to_rank != tuple(range(schedule.pp_size)):
        raise ValueError(f"post-validation in the engine passes the optimizer state along a "
                         f"pipeline of one stage per rank; {schedule.name} places "
                         f"{schedule.num_stages} stages on {schedule.pp_size} ranks "
                         f"(use --optimizer-sync barrier)")
