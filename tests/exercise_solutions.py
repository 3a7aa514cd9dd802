"""Reference answers of the lesson exercises, worked out from the lessons' closed forms.

They live in the tests, never in a lesson folder or the package: the checker computes the
right answer from the simulator at check time, and these are written independently of it (the
formulas of the lesson texts), so a test that compares the two can fail.
``NOTEBOOK_CELLS`` holds what a learner would type into each notebook's answer cell.
"""

from __future__ import annotations

import math
from fractions import Fraction


def one_f_one_b_order(stage: int, p: int, m: int) -> list[str]:
    """Stage ``stage``'s 1F1B order: p-1-stage warm-up forwards, then F and B alternate."""
    warmup = min(p - 1 - stage, m)
    order = [f"{stage}F{mb}" for mb in range(warmup)]
    for k in range(m - warmup):
        order += [f"{stage}F{warmup + k}", f"{stage}B{k}"]
    return order + [f"{stage}B{mb}" for mb in range(m - warmup, m)]


def bubble(p: int, m: int) -> Fraction:
    return Fraction(p - 1, m + p - 1)


def zb_h1_idle(p, t_f, t_i, t_w):
    return (p - 1) * max(t_f + t_i - t_w, t_f, t_i)


def right_answers(exercise_id: str, n: dict) -> dict[str, object]:
    """The right answer of every part, as text a learner would type, for numbers ``n``."""
    if exercise_id == "bubble":
        target = Fraction(n["target_percent"], 100)
        smallest = math.ceil((n["p"] - 1) * (1 - target) / target)
        more = bubble(n["p_b"], n["m_b"] + n["more"])
        fewer = bubble(n["p_fewer"], n["m_b"])
        return {"a": str(smallest), "b": "more-microbatches" if more < fewer else "fewer-stages",
                "c": "ceil((p-1)*(1-b)/b)"}
    if exercise_id == "memory":
        ratio = Fraction(n["m"], min(n["p"] - n["stage"], n["m"]))
        order = one_f_one_b_order(n["stage_order"], n["p_order"], n["m_order"])
        return {"a": str(ratio), "b": " ".join(order), "c": "m / min(p - i, m)"}
    if exercise_id == "zero-bubble":
        p, t_f, t_i, t_w = n["p"], n["t_f"], n["t_i"], n["t_w"]
        waits = {"forward-fill": t_f, "gradient-return": t_i, "weight-drain": t_f + t_i - t_w}
        return {"a": f"{zb_h1_idle(p, t_f, t_i, t_w):g}", "b": max(waits, key=waits.get),
                "c": "(p-1)*max(t_f+t_i-t_w, t_f, t_i) / (m*(t_f+t_i+t_w)"
                     " + (p-1)*max(t_f+t_i-t_w, t_f, t_i))"}
    return _lesson_solutions(exercise_id).right_answers(n)


def _lesson_solutions(exercise_id: str):
    """Lessons 5 on keep their reference answers in a module of their own beside this one,
    ``solutions_<exercise id>.py`` (hyphens as underscores), with ``right_answers(n)`` and
    ``NOTEBOOK_CELL``: one file per lesson, so lessons can be written side by side."""
    import importlib

    try:
        return importlib.import_module("solutions_" + exercise_id.replace("-", "_"))
    except ModuleNotFoundError:
        raise KeyError(exercise_id) from None


# What a learner types into each notebook's answer cell (tagged "answer" in the notebook).
NOTEBOOK_CELLS = {
    "01-the-bubble": '''
import math


def bubble_fraction(p, m):
    return (p - 1) / (m + p - 1)


def smallest_m(p, b):
    # (p-1)/(m+p-1) <= b  <=>  m >= (p-1)(1-b)/b
    return math.ceil((p - 1) * (1 - b) / b - 1e-9)


after_more = bubble_fraction(mine["p_b"], mine["m_b"] + mine["more"])
after_fewer = bubble_fraction(mine["p_fewer"], mine["m_b"])
answers = {
    "a": smallest_m(mine["p"], mine["target_percent"] / 100),
    "b": "more-microbatches" if after_more < after_fewer else "fewer-stages",
    "c": smallest_m,
}
''',
    "02-memory-gpipe-vs-1f1b": '''
def one_f_one_b_order(stage, p, m):
    warmup = min(p - 1 - stage, m)
    order = [f"{stage}F{mb}" for mb in range(warmup)]
    for k in range(m - warmup):
        order += [f"{stage}F{warmup + k}", f"{stage}B{k}"]
    return order + [f"{stage}B{mb}" for mb in range(m - warmup, m)]


def gpipe_over_1f1b(p, m, i):
    return m / min(p - i, m)


answers = {
    "a": gpipe_over_1f1b(mine["p"], mine["m"], mine["stage"]),
    "b": one_f_one_b_order,
    "c": gpipe_over_1f1b,
}
''',
    "03-zero-bubble": '''
def zb_h1_idle(p, t_f, t_i, t_w):
    return (p - 1) * max(t_f + t_i - t_w, t_f, t_i)


def zb_h1_bubble(p, m, t_f, t_i, t_w):
    idle = zb_h1_idle(p, t_f, t_i, t_w)
    return idle / (m * (t_f + t_i + t_w) + idle)


waits = {"forward-fill": mine["t_f"], "gradient-return": mine["t_i"],
         "weight-drain": mine["t_f"] + mine["t_i"] - mine["t_w"]}
answers = {
    "a": zb_h1_idle(mine["p"], mine["t_f"], mine["t_i"], mine["t_w"]),
    "b": max(waits, key=waits.get),
    "c": zb_h1_bubble,
}
''',
}


def notebook_cell(lesson) -> str:
    """What a learner types into ``lesson``'s notebook answer cell to get every part right."""
    from pathlib import Path

    if lesson.name in NOTEBOOK_CELLS:
        return NOTEBOOK_CELLS[lesson.name]
    if lesson.exercise.kind != "questions":  # the coding lab: the reference schedule file
        return (Path(__file__).parent / "schedule_lab_solution.py").read_text()
    return _lesson_solutions(lesson.exercise.id).NOTEBOOK_CELL
