"""Reference answers of exercise ``overlapping-steps`` (lesson 11), from the lesson's forms.

ZB-H2 runs 2(p-1-r) warm-up forwards and one more before rank r's first input gradient (Qi
et al., ICLR 2024, Sec. 2.2); each rank validates there. A barrier leaves a flushed step's
idle time, (p-1) max(T_F, T_I-T_F, T_F+T_I-2T_W); overlapping steps leave only the waits
inside a rank's own step, (p-1) max(0, T_I-T_F, T_F+T_I-2T_W) (pplab.formulas.zero_bubble).
"""

from __future__ import annotations

from fractions import Fraction

FLUSHED = "max(t_f, t_i-t_f, t_f+t_i-2*t_w)"
OVERLAPPED = "max(0, t_i-t_f, t_f+t_i-2*t_w)"
WORK = "m*(t_f+t_i+t_w)"


def right_answers(n: dict) -> dict[str, str]:
    return {"a": str(2 * (n["p"] - 1 - n["r"]) + 1), "b": "backup",
            "c": {"saving": f"(p-1)*({FLUSHED} - {OVERLAPPED})",
                  "ratio": f"({WORK} + (p-1)*{FLUSHED}) / ({WORK} + (p-1)*{OVERLAPPED})"}[
                n["form_c"]]}


def mistakes(n: dict) -> dict[str, list]:
    """The usual wrong answers, for tests/test_exercises.py: the warm-up alone, 1F1B's, the
    fill alone, the paper's term, the whole flushed idle time."""
    p, r = n["p"], n["r"]
    return {"a": [Fraction(2 * (p - 1 - r)), Fraction(p - 1 - r), Fraction(p - r)],
            "c": {"saving": ["(p-1)*t_f", "(p-1)*(t_f+t_i-2*t_w)", f"(p-1)*{FLUSHED}", "0",
                             f"(p-1)*{OVERLAPPED}"],
                  "ratio": [f"({WORK} + (p-1)*t_f) / ({WORK})",
                            f"({WORK}) / ({WORK} + (p-1)*t_f)",
                            f"({WORK} + (p-1)*{OVERLAPPED}) / ({WORK} + (p-1)*{FLUSHED})",
                            "1"]}[n["form_c"]]}


NOTEBOOK_CELL = '''
def steady_step(p, m, t_f, t_i, t_w, sync):
    """ZB-H2's step time in the steady state: the work, and what each rank still waits."""
    work = m * (t_f + t_i + t_w)
    if sync == "barrier":  # the last rank's fill stays: one flushed step's idle time
        return work + (p - 1) * max(t_f, t_i - t_f, t_f + t_i - 2 * t_w)
    return work + (p - 1) * max(0, t_i - t_f, t_f + t_i - 2 * t_w)


def saving(p, t_f, t_i, t_w):
    m = 2 * p - 1  # the work cancels: any m >= 2p-1 gives the same difference
    return steady_step(p, m, t_f, t_i, t_w, "barrier") - steady_step(p, m, t_f, t_i, t_w, "post")


def ratio(p, m, t_f, t_i, t_w):
    return steady_step(p, m, t_f, t_i, t_w, "barrier") / steady_step(p, m, t_f, t_i, t_w, "post")


answers = {
    "a": 2 * (mine["p"] - 1 - mine["r"]) + 1,
    "b": "backup",
    "c": saving if mine["form_c"] == "saving" else ratio,
}
'''
