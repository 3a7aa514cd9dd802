"""Reference answers of exercise ``measured-vs-predicted`` (lesson 10), from the lesson's pieces.

Worked out from the costs the exercise shows, not from the judge (which compares with the
run's measured median step, the calibrated model's what-if, the simulator and the breakdown):

* a step of a pipeline with a core per rank is m + p - 1 slots of its slowest stage, each slot
  a forward and a backward (on a faster core, that much faster) with the overhead o around
  each, then the optimizer tail t;
* a heavier optimizer makes only the tail longer, after the last backward of each rank;
* the largest part of a shared run's gap is read off the breakdown of its median step,
  measured (``pplab.calibration.gap_breakdown``) against the naive prediction's closed form:
  m (F + B) computing and (p - 1)(F + B) idle per rank.

``wrong_answers(n)`` holds the usual mistakes of each part, each more than 10% off where the
judge must refuse it, for tests that feed wrong answers.
"""

from __future__ import annotations

import statistics

TOLERANCE = 0.10


def _slowest(n: dict, key: str) -> float:
    return max(f + b for f, b in zip(n[f"f_{key}"], n[f"b_{key}"], strict=True))


def critical_path(n: dict, key: str, m: int, speed: float = 1) -> float:
    """m + p - 1 slots of the slowest stage (its computation ``speed`` times faster), the
    overhead twice a slot, then the tail (ms)."""
    return ((m + n[f"p_{key}"] - 1) * (_slowest(n, key) / speed + 2 * n[f"o_{key}"])
            + n[f"t_{key}"])


def naive(n: dict, key: str, m: int) -> float:
    """(m + p - 1)(F + B) with the median F and B of the stages (ms)."""
    return (m + n[f"p_{key}"] - 1) * (statistics.median(n[f"f_{key}"])
                                      + statistics.median(n[f"b_{key}"]))


def largest_gap(run_name: str) -> str:
    """The biggest part of measured - naive of a bundled run's median step, by option name."""
    from pplab.calibration import calibration_for, gap_breakdown, replay
    from pplab.calibration.breakdown import median_step
    from pplab.runs.resources import bundled_runs_dir
    from pplab.runs.run_dirs import load_run

    run = load_run(bundled_runs_dir() / run_name)
    calibration = calibration_for(run, save=False)
    table = gap_breakdown(run, calibration, replay(run, calibration),
                          step=median_step(run, calibration)).set_index("what")
    p, m = calibration.pp_size, int(run.metadata["schedule"]["num_microbatches"])
    stages = calibration.compute.values()
    f = statistics.median(c["F"] for c in stages)
    b = statistics.median(c["B"] for c in stages)
    naive_parts = {"compute": m * (f + b), "waiting on a dependency": (p - 1) * (f + b)}
    names = {"compute": "compute", "communication": "communication",
             "waiting": "waiting on a dependency", "contention": "contention",
             "overhead": "overhead"}
    gaps = {short: table.loc[long, "measured (s)"] - naive_parts.get(long, 0.0)
            for short, long in names.items()}
    return max(gaps, key=gaps.get)


def step_formula(n: dict) -> str:
    slot = n["f_c"] + n["b_c"] + 2 * n["o_c"]
    return f"(m+p-1)*{slot:g}+{n['t_c']:g}"


def right_answers(n: dict) -> dict[str, str]:
    heavier = critical_path(n, "b", n["m_wi"]) + (n["tail_b"] - 1) * n["t_b"]
    return {"a": f"{critical_path(n, 'a', n['m_a'], n['speed_a']):.1f}",
            "b": f"{heavier:.1f}",
            "c": step_formula(n),
            "d": largest_gap(n["run_d"])}


def wrong_answers(n: dict) -> dict[str, list[str]]:
    """Usual mistakes of each part (numbers in ms); the judge refuses those more than 10% off
    its truth, so a test keeps only those."""
    m_a, m_b, speed = n["m_a"], n["m_wi"], n["speed_a"]
    f, b, o, t = n["f_c"], n["b_c"], n["o_c"], n["t_c"]
    return {
        "a": [f"{naive(n, 'a', m_a) / speed:.1f}", f"{critical_path(n, 'a', m_a):.1f}",
              f"{critical_path(n, 'a', m_a) / speed:.1f}",
              f"{m_a * (_slowest(n, 'a') / speed + 2 * n['o_a']) + n['t_a']:.1f}"],
        "b": [f"{naive(n, 'b', m_b):.1f}", f"{critical_path(n, 'b', m_b):.1f}",
              f"{m_b * (_slowest(n, 'b') + 2 * n['o_b']) + n['tail_b'] * n['t_b']:.1f}",
              f"{critical_path(n, 'b', n['m_b']) + (n['tail_b'] - 1) * n['t_b']:.1f}"],
        "c": [f"(m+p-1)*({f:g}+{b:g})", f"(m+p-1)*({f:g}+{b:g})+{t:g}",
              f"(m+p-1)*({f:g}+{b:g}+2*{o:g})", f"m*({f:g}+{b:g}+2*{o:g})+{t:g}",
              f"(m+p-1)*({f:g}+{b:g}+{o:g})+{t:g}", f"(m+p-1)*({f:g}+{b:g}+2*{o:g})+p*{t:g}"],
    }


NOTEBOOK_CELL = '''
import statistics


def critical_path(f, b, o, t, m, speed=1):
    """m + p - 1 slots of the slowest stage (computing speed times faster), o around each
    action, then the tail (ms)."""
    p = len(f)
    slowest = max(fs + bs for fs, bs in zip(f, b)) / speed
    return (m + p - 1) * (slowest + 2 * o) + t


def step_time(m, p):
    return (m + p - 1) * (mine["f_c"] + mine["b_c"] + 2 * mine["o_c"]) + mine["t_c"]


a = critical_path(mine["f_a"], mine["b_a"], mine["o_a"], mine["t_a"], mine["m_a"],
                  mine["speed_a"])
b = critical_path(mine["f_b"], mine["b_b"], mine["o_b"], mine["tail_b"] * mine["t_b"],
                  mine["m_wi"])
gaps = comparisons[mine["run_d"]].table.set_index("per rank")["measured - naive (ms)"]
largest = gaps.iloc[:-1].idxmax()
short = {"waiting on a dependency": "waiting"}
answers = {"a": round(a, 1), "b": round(b, 1), "c": step_time, "d": short.get(largest, largest)}
'''
