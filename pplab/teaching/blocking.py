"""What a blocking runtime does with a schedule: every message in order, and whether it ends.

What it teaches (lesson 4a): under a schedule there is a runtime, and the simplest one is
blocking. For each of its actions a rank receives what the action needs (an activation from
rank r - 1 before a forward, a gradient from rank r + 1 before a backward), computes, and
sends what it made (the activation to r + 1, the input's gradient to r - 1). With gloo a
blocking send returns only when the receiver has posted the matching receive, so a send and
its receive happen together or not at all. ``blocking_messages`` lists a rank's messages in
that order; ``blocking_run`` plays every rank's list under that rule and says whether the
step ends, or which rank waits in which call when none can move: GPipe always ends, 1F1B at
p = 2 and m = 2 or more does not (rank 0 sends the activation of microbatch 1 while rank 1
sends the gradient of microbatch 0). tests/test_runtime_lab.py shows real processes doing the
same.

    python -c "from pplab.teaching.blocking import blocking_run; \\
from pplab.schedules import build; print(blocking_run(build('1f1b', 2, 4)))"
"""

from __future__ import annotations

from typing import NamedTuple

from pplab.schedules import Schedule
from pplab.schedules.actions import message_into, message_of


class Call(NamedTuple):
    """One blocking call of a rank: ``call`` (send or recv) with ``peer``, about ``what``
    (activation or gradient) of ``microbatch``, for the action ``action`` (like ``F1``)."""

    call: str
    peer: int
    what: str
    microbatch: int
    action: str

    def __str__(self) -> str:
        way = "to" if self.call == "send" else "from"
        return (f"{self.call} {way} rank {self.peer} (the {self.what} of microbatch "
                f"{self.microbatch}, {'after' if self.call == 'send' else 'for'} "
                f"{self.action})")


def blocking_messages(schedule: Schedule, rank: int) -> list[Call]:
    """Rank ``rank``'s blocking calls, in the order a blocking runtime makes them: before each
    action the receive of what it needs, after it the send of what it made, by the one rule
    for who sends to whom (``message_into`` and ``message_of``)."""
    placement, calls = schedule.stage_to_rank, []
    for action in schedule.actions[rank]:
        label, mb = f"{action.kind}{action.microbatch}", action.microbatch
        needed, made = message_into(action, placement), message_of(action, placement)
        if needed is not None:
            calls.append(Call("recv", needed.sender, needed.what, mb, label))
        if made is not None:
            calls.append(Call("send", made.receiver, made.what, mb, label))
    return calls


def blocking_run(schedule: Schedule) -> dict[int, Call] | None:
    """None when the blocking runtime gets through the step; else what each rank still
    waits in when no send can meet its receive (a deadlock)."""
    queues = {rank: blocking_messages(schedule, rank) for rank in range(schedule.pp_size)}
    heads = dict.fromkeys(queues, 0)
    moved = True
    while moved:
        moved = False
        for rank, queue in queues.items():
            if heads[rank] >= len(queue) or queue[heads[rank]].call != "send":
                continue
            sent = queue[heads[rank]]
            other = queues[sent.peer]
            head = other[heads[sent.peer]] if heads[sent.peer] < len(other) else None
            if head is not None and head.call == "recv" and head.peer == rank \
                    and (head.what, head.microbatch) == (sent.what, sent.microbatch):
                heads[rank] += 1
                heads[sent.peer] += 1
                moved = True
    stuck = {rank: queue[heads[rank]] for rank, queue in queues.items()
             if heads[rank] < len(queue)}
    return stuck or None
