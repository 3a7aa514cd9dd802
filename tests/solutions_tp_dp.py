"""Reference answers of exercise ``tp-dp`` (lesson 8), from the lesson's closed forms.

Written from the lesson text, not from pplab: Megatron's 2 + 2 all-reduces per layer per
microbatch of one activation (b s h e bytes), a ring's 2 (n-1)/n share per rank, one gradient
all-reduce per step, and the alpha-beta link time of part (c).
"""

from __future__ import annotations

from fractions import Fraction


def tp_bytes(L, m, b, s, h, e, t):
    return Fraction(4 * L * m * b * s * h * e * 2 * (t - 1), t)


def ring_seconds(nbytes, k, bandwidth, latency):
    return 2 * (k - 1) * (latency + nbytes / (k * bandwidth))


def slow_link_seconds(n: dict) -> dict[str, float]:
    bandwidth, latency = n["link_gbs"] * 1e9, n["link_us"] * 1e-6
    one = n["b2"] * n["s2"] * n["h2"] * 2
    return {"tensor": 4 * n["layers2"] * n["m2"] * ring_seconds(one, 2 * n["gpus"], bandwidth,
                                                                latency),
            "pipeline": 2 * n["m2"] * (latency + one / bandwidth),
            "data": ring_seconds(n["P2"] * n["e_g2"], 2, bandwidth, latency)}


def right_answers(n: dict) -> dict[str, str]:
    times = slow_link_seconds(n)
    dp = Fraction(2 * (n["d"] - 1) * n["P"] * n["e_g"], n["d"])
    return {"a": str(tp_bytes(n["layers"], n["m"], n["b"], n["s"], n["h"], n["e"], n["t"])),
            "b": str(dp), "c": min(times, key=times.get),
            "d": {"tp": "4*L*m*b*s*h*e*2*(t-1)/t", "dp": "2*(d-1)*P*e/d"}[n["form_d"]]}


NOTEBOOK_CELL = '''
def tp_bytes_per_rank(L, m, b, s, h, e, t):
    # 2 g all-reduces in F and 2 f all-reduces in B per layer and microbatch, each of one
    # activation (b s h e bytes); a ring sends 2(t-1)/t of each from every rank
    return 4 * L * m * b * s * h * e * 2 * (t - 1) // t


def dp_bytes_per_rank(P, e, d):
    # one ring all-reduce of the P * e bytes of gradients over d replicas
    return 2 * (d - 1) * P * e / d


def ring_seconds(nbytes, k, bandwidth, latency):
    return 2 * (k - 1) * (latency + nbytes / (k * bandwidth))


bandwidth, latency = mine["link_gbs"] * 1e9, mine["link_us"] * 1e-6
one = mine["b2"] * mine["s2"] * mine["h2"] * 2
busy = {
    "tensor": 4 * mine["layers2"] * mine["m2"] * ring_seconds(one, 2 * mine["gpus"], bandwidth,
                                                              latency),
    "pipeline": 2 * mine["m2"] * (latency + one / bandwidth),
    "data": ring_seconds(mine["P2"] * mine["e_g2"], 2, bandwidth, latency),
}
answers = {
    "a": tp_bytes_per_rank(mine["layers"], mine["m"], mine["b"], mine["s"], mine["h"],
                           mine["e"], mine["t"]),
    "b": 2 * (mine["d"] - 1) * mine["P"] * mine["e_g"] // mine["d"],
    "c": min(busy, key=busy.get),
    "d": tp_bytes_per_rank if mine["form_d"] == "tp" else dp_bytes_per_rank,
}
'''


def mistakes(n: dict) -> dict[str, list]:
    """The usual slips of the number and formula parts, for the generic feedback tests."""
    answers = right_answers(n)
    truth, dp, t = Fraction(answers["a"]), Fraction(answers["b"]), n["t"]
    payload = truth * t / (2 * (t - 1))
    return {"a": [payload, payload * t, truth / 2, truth * t, truth / n["m"], truth * 8],
            "b": [Fraction(n["P"] * n["e_g"]), dp * n["m"], dp * n["d"], dp / 2],
            "d": {"tp": ["4*L*m*b*s*h*e", "4*L*m*b*s*h*e*t", "4*L*m*b*s*h*e*(t-1)/t",
                         "8*L*m*b*s*h*e*(t-1)", "8*m*b*s*h*e*(t-1)/t", "64*L*m*b*s*h*e*(t-1)/t"],
                  "dp": ["P*e", "2*(d-1)*P*e", "(d-1)*P*e/d", "P*e*d", "2*(d-1)*P/d"]
                  }[n["form_d"]]}
