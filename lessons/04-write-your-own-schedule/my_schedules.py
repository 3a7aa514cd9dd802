"""Write your own schedules: GPipe, 1F1B and ZB-H1, for any p and m.

Copy this file to your own folder, fill in the three functions, and check them:

    cp lessons/04-write-your-own-schedule/my_schedules.py my_schedules.py
    .venv/bin/pplab exercise check schedule-lab --file my_schedules.py

Each function gets the pipeline depth p (stage r lives on rank r) and the microbatches m of
one step, and returns what every rank does, in order: {rank: [action, ...]}. An action is
written as PyTorch writes it: "2F0" is stage 2's forward of microbatch 0, "2B0" its full
backward, "2I0" and "2W0" the two halves of that backward (input gradient, weight gradient).
Never write a bubble: idle time comes out of running the schedule.

As shipped, each function runs the forwards only, so the checker stops at the first action
that is missing. Read its message, then write the rest.
"""

LEARNER = "your-name"  # your name, as you hand it in: the hidden cases are drawn for it


def gpipe(p, m):
    """All the forwards of the step, then all the backwards (Huang et al., GPipe, 2019)."""
    # TODO: after its forwards, each rank runs the backwards of its microbatches.
    return {rank: [f"{rank}F{mb}" for mb in range(m)] for rank in range(p)}


def one_f_one_b(p, m):
    """A few warm-up forwards, then one forward and one backward in turn, then the backwards
    that are left (PipeDream-Flush, Narayanan et al., 2021)."""
    # TODO: how many forwards must rank r run before its first backward can arrive?
    return {rank: [f"{rank}F{mb}" for mb in range(m)] for rank in range(p)}


def zb_h1(p, m):
    """1F1B with each backward split in two: I (the input gradient) at once, W (the weight
    gradient) held back to fill the drain (Qi et al., Zero Bubble Pipeline Parallelism, 2024)."""
    # TODO: run I where 1F1B runs B; rank r keeps up to r weight gradients pending.
    return {rank: [f"{rank}F{mb}" for mb in range(m)] for rank in range(p)}
