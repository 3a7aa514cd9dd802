"""Write your own schedules: GPipe, 1F1B and ZB-H1, for any p and m, within limits of your own.

Copy this file to your own folder, fill in the three functions, and check them:

    cp lessons/04-write-your-own-schedule/my_schedules.py my_schedules.py
    .venv/bin/pplab exercise check schedule-lab --file my_schedules.py

Each function gets the pipeline depth p (stage r lives on rank r) and the microbatches m of
one step, and returns what every rank does, in order: {rank: [action, ...]}. An action is
written as PyTorch writes it: "2F0" is stage 2's forward of microbatch 0, "2B0" its full
backward, "2I0" and "2W0" the two halves of that backward (input gradient, weight gradient).
Action(2, F, 0) below prints as "2F0"; return Actions or their texts, either works. Never
write a bubble: idle time comes out of running the schedule.

Two functions also take a limit, drawn for you in some hidden cases:

* one_f_one_b(p, m, k): no stage may hold more than k microbatches in flight (forward run,
  backward not yet); k >= p leaves 1F1B as it is;
* zb_h1(p, m, d): each W must run at most d input gradients (I) after its own I on its rank;
  d >= p - 1 leaves ZB-H1 as it is.

Your file is checked in a process of its own that has no pplab: import pplab (or start a
process, or open the network) and the file gets no points. Everything you need is here.

As shipped, each function runs the forwards only, so the checker stops at the first action
that is missing. Read its message, then write the rest.
"""

from typing import NamedTuple

LEARNER = "your-name"  # your name, as you hand it in: the hidden cases are drawn for it

F, B, I, W = "F", "B", "I", "W"  # forward, full backward, input gradient, weight gradient


class Action(NamedTuple):
    """One action: ``stage`` runs ``kind`` (F, B, I or W) for ``microbatch``."""

    stage: int
    kind: str
    microbatch: int

    def __str__(self):
        return f"{self.stage}{self.kind}{self.microbatch}"


def empty_schedule(p):
    """What every rank does, in order: {rank: [Action, ...]}, one empty list per rank."""
    return {rank: [] for rank in range(p)}


def gpipe(p, m):
    """All the forwards of the step, then all the backwards (Huang et al., GPipe, 2019)."""
    schedule = empty_schedule(p)
    for rank in range(p):
        schedule[rank] += [Action(rank, F, mb) for mb in range(m)]
        # TODO: after its forwards, each rank runs the backwards of its microbatches.
    return schedule


def one_f_one_b(p, m, k):
    """A few warm-up forwards, then one forward and one backward in turn, then the backwards
    that are left (PipeDream-Flush, Narayanan et al., 2021); at most k in flight per stage."""
    schedule = empty_schedule(p)
    for rank in range(p):
        # TODO: how many forwards must rank r run before its first backward can arrive,
        # and how many may it run under the limit k?
        schedule[rank] += [Action(rank, F, mb) for mb in range(m)]
    return schedule


def zb_h1(p, m, d):
    """1F1B with each backward split in two: I (the input gradient) at once, W (the weight
    gradient) held back to fill the drain (Qi et al., Zero Bubble Pipeline Parallelism, 2024);
    each W at most d input gradients after its own I."""
    schedule = empty_schedule(p)
    for rank in range(p):
        # TODO: run I where 1F1B runs B; how many W's may rank r keep pending?
        schedule[rank] += [Action(rank, F, mb) for mb in range(m)]
    return schedule
