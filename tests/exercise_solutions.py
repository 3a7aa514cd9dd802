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
                "c": {"m": "ceil((p-1)*(1-b)/b)", "p": "floor(1 + b*m/(1-b))"}[n["form_c"]]}
    if exercise_id == "memory":
        # 1F1B holds p - stage there and GPipe all m: the ratio reaches the factor at ...
        fewest = math.ceil(Fraction(n["factor"]) * (n["p"] - n["stage"]))
        order = one_f_one_b_order(n["stage_order"], n["p_order"], n["m_order"])
        return {"a": str(fewest), "b": " ".join(order),
                "c": {"ratio": "m / min(p - i, m)", "saved": "m - min(p - i, m)"}[n["form_c"]]}
    if exercise_id == "zero-bubble":
        p, t_f, t_i, t_w = n["p"], n["t_f"], n["t_i"], n["t_w"]
        waits = {"forward-fill": t_f, "gradient-return": t_i, "weight-drain": t_f + t_i - t_w}
        idle, work, b = zb_h1_idle(p, t_f, t_i, t_w), t_f + t_i + t_w, n["target_percent"] / 100
        return {"a": str(max(p, math.ceil(idle * (1 - b) / (b * work) - 1e-9))),
                "b": max(waits, key=waits.get),
                "c": {"saving": "(p-1)*(t_f+t_i+t_w) - (p-1)*max(t_f+t_i-t_w, t_f, t_i)",
                      "ratio": "max(t_f+t_i-t_w, t_f, t_i) / (t_f+t_i+t_w)"}[n["form_c"]]}
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


def largest_p(m, b):
    # (p-1)/(m+p-1) <= b  <=>  p <= 1 + b m/(1-b)
    return math.floor(1 + b * m / (1 - b) + 1e-9)


after_more = bubble_fraction(mine["p_b"], mine["m_b"] + mine["more"])
after_fewer = bubble_fraction(mine["p_fewer"], mine["m_b"])
answers = {
    "a": smallest_m(mine["p"], mine["target_percent"] / 100),
    "b": "more-microbatches" if after_more < after_fewer else "fewer-stages",
    "c": smallest_m if mine["form_c"] == "m" else largest_p,
}
''',
    "02-memory-gpipe-vs-1f1b": '''
import math


def one_f_one_b_order(stage, p, m):
    warmup = min(p - 1 - stage, m)
    order = [f"{stage}F{mb}" for mb in range(warmup)]
    for k in range(m - warmup):
        order += [f"{stage}F{warmup + k}", f"{stage}B{k}"]
    return order + [f"{stage}B{mb}" for mb in range(m - warmup, m)]


def held_by_1f1b(p, m, i):
    return min(p - i, m)  # the warm-up forwards, and the one that starts its first backward


def formula_c(p, m, i):
    if mine["form_c"] == "ratio":
        return m / held_by_1f1b(p, m, i)
    return m - held_by_1f1b(p, m, i)


answers = {
    # GPipe holds m, 1F1B p - stage: the ratio m / (p - stage) reaches the factor at
    "a": math.ceil(mine["factor"] * (mine["p"] - mine["stage"])),
    "b": one_f_one_b_order,
    "c": formula_c,
}
''',
    "03-zero-bubble": '''
import math


def zb_h1_idle(p, t_f, t_i, t_w):
    return (p - 1) * max(t_f + t_i - t_w, t_f, t_i)


def formula_c(**costs):
    t_f, t_i, t_w = costs["t_f"], costs["t_i"], costs["t_w"]
    zb = max(t_f + t_i - t_w, t_f, t_i)  # ZB-H1's idle per hop; 1F1B's is t_f + t_i + t_w
    if mine["form_c"] == "ratio":
        return zb / (t_f + t_i + t_w)
    return (costs["p"] - 1) * (t_f + t_i + t_w - zb)


def fewest_m(p, t_f, t_i, t_w, b):
    # idle / (m (F+I+W) + idle) <= b  <=>  m >= idle (1-b) / (b (F+I+W)), and m >= p
    idle = zb_h1_idle(p, t_f, t_i, t_w)
    return max(p, math.ceil(idle * (1 - b) / (b * (t_f + t_i + t_w)) - 1e-9))


waits = {"forward-fill": mine["t_f"], "gradient-return": mine["t_i"],
         "weight-drain": mine["t_f"] + mine["t_i"] - mine["t_w"]}
answers = {
    "a": fewest_m(mine["p"], mine["t_f"], mine["t_i"], mine["t_w"],
                  mine["target_percent"] / 100),
    "b": max(waits, key=waits.get),
    "c": formula_c,
}
''',
}


def notebook_cell(lesson) -> str:
    """What a learner types into ``lesson``'s notebook answer cell to get every part right."""
    from pathlib import Path

    if lesson.name in NOTEBOOK_CELLS:
        return NOTEBOOK_CELLS[lesson.name]
    if lesson.exercise.id == "runtime-lab":
        from solutions_runtime import SOLUTION

        return SOLUTION
    if lesson.exercise.kind != "questions":  # the coding lab: the reference schedule file
        return (Path(__file__).parent / "schedule_lab_solution.py").read_text()
    return _lesson_solutions(lesson.exercise.id).NOTEBOOK_CELL
