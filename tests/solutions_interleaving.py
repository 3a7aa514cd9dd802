"""Reference answers of exercise ``interleaving`` (lesson 6), from the lesson's counting.

(a) and (b) come from the closed forms the lesson derives (Megatron-LM's warm-up count, each
chunk 1/v of a rank; one message per link crossed, each way); (c) from simulating the step at
each v, as the lesson tells a learner to, through the simulator itself rather than the judge.
"""

from __future__ import annotations

from fractions import Fraction

CHOICES = (1, 2, 4, 8)


def rank_peak(p: int, m: int, v: int, rank: int) -> Fraction:
    """Rank ``rank``'s peak in full-rank microbatches: warm-up chunk forwards plus one, 1/v each."""
    if v == 1:
        return Fraction(min(p - rank, m))
    warmup = v * m if m == p else 2 * (p - rank - 1) + (v - 1) * p
    return Fraction(min(warmup + 1, v * m), v)


def messages(p: int, m: int, v: int) -> int:
    """Each microbatch crosses the p v - 1 links between consecutive stages, both ways."""
    return 2 * m * (p * v - 1)


def best_v(n: dict) -> int:
    from pplab.schedules import build
    from pplab.sim.cost_model import CostModel
    from pplab.sim.simulator import simulate
    from pplab.timeline import metrics

    cost = CostModel(forward=n["t_f"], backward=n["t_b"], latency=n["latency"])
    p, m = n["p_c"], n["m_c"]
    steps = {v: metrics(simulate(build("1f1b", p, m) if v == 1 else
                                 build("interleaved-1f1b", p, m, v), cost))["makespan"]
             for v in CHOICES}
    return min(steps, key=steps.get)


def mistakes(n: dict) -> dict[str, list]:
    """The usual wrong answers of (a) and (b), for tests/test_exercises.py."""
    p, m, v, r = n["p"], n["m"], n["v"], n["rank"]
    interleaved, plain = rank_peak(p, m, v, r), rank_peak(p, m, 1, r)
    return {"a": [interleaved * v / plain, 1 + Fraction(p - 1, p * v), Fraction(1), Fraction(v),
                  (interleaved - Fraction(1, v)) / plain],
            "b": {"step": ["2*m*v*(p-1)", "2*m*(p-1)", "m*(p*v-1)", "2*m*p*v", "2*(p*v-1)",
                           "m*p*v"],
                  "rank": ["2*m*v", "m*v", "2*m*(2*v-1)", "2*v-1", "m*(v-1)"]}[n["form_b"]]}


def right_answers(n: dict) -> dict[str, str]:
    ratio = (rank_peak(n["p"], n["m"], n["v"], n["rank"])
             / rank_peak(n["p"], n["m"], 1, n["rank"]))
    return {"a": str(ratio), "b": {"step": "2*m*(p*v-1)", "rank": "m*(2*v-1)"}[n["form_b"]],
            "c": f"v{best_v(n)}"}


NOTEBOOK_CELL = '''
from fractions import Fraction

from pplab.schedules import build
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import metrics


def rank_peak(p, m, v, rank):
    """Rank `rank`'s peak, in full-rank microbatches (v = 1: plain 1F1B)."""
    if v == 1:
        return Fraction(min(p - rank, m))
    warmup = v * m if m == p else 2 * (p - rank - 1) + (v - 1) * p
    return Fraction(min(warmup + 1, v * m), v)


def messages(**sizes):
    # a step's messages (p, m, v) or one rank's (m, v): mine["form_b"] says which
    m, v = sizes["m"], sizes["v"]
    if mine["form_b"] == "step":
        return 2 * m * (sizes["p"] * v - 1)
    return m * (2 * v - 1)  # v chunks send activations, all but the first send gradients


steps = {}
for chunks in (1, 2, 4, 8):
    name = "1f1b" if chunks == 1 else "interleaved-1f1b"
    schedule = build(name, mine["p_c"], mine["m_c"], chunks) if chunks > 1 else \\
        build(name, mine["p_c"], mine["m_c"])
    latency_cost = CostModel(forward=mine["t_f"], backward=mine["t_b"], latency=mine["latency"])
    steps[chunks] = metrics(simulate(schedule, latency_cost))["makespan"]

answers = {
    "a": rank_peak(mine["p"], mine["m"], mine["v"], mine["rank"])
         / rank_peak(mine["p"], mine["m"], 1, mine["rank"]),
    "b": messages,
    "c": f"v{min(steps, key=steps.get)}",
}
'''
