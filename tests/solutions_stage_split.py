"""Reference answers of exercise ``stage-split`` (lesson 5), from the lesson's closed forms.

Written without pplab's search or simulator: (a) balances the stages by trying every split
and keeping the fastest slowest stage (the lesson's rule when m is large against p); (b)
multiplies 1F1B's min(p - i, m) microbatches held by what one microbatch saves on each stage;
(c) is the ratio of two such counts. ``NOTEBOOK_CELL`` is what a learner types into the
notebook's answer cell; ``mistakes`` lists wrong answers the checker must refuse.
"""

from __future__ import annotations

import itertools
from fractions import Fraction


def splits(layers: int, stages: int):
    for cuts in itertools.combinations(range(1, layers), stages - 1):
        bounds = (0, *cuts, layers)
        yield [bounds[k + 1] - bounds[k] for k in range(stages)]


def stage_times(split, n: dict, embed: bool = True, head: bool = True) -> list[float]:
    """F + B of one microbatch per stage: 3 per layer, plus the embedding and the head."""
    times = [3.0 * layers for layers in split]
    times[0] += (n["embed_f"] + n["embed_b"]) * embed
    times[-1] += (n["head_f"] + n["head_b"]) * head
    return times


def balanced_bottleneck(n: dict, embed: bool = True, head: bool = True) -> float:
    return min(max(stage_times(s, n, embed, head)) for s in splits(n["layers"], n["p"]))


def memory_peaks(n: dict) -> list[float]:
    p, split = n["p_b"], n["split_b"]
    return [min(p - i, n["m_b"]) * (split[i] * n["mib_layer"]
                                    + (n["head_mib"] if i == p - 1 else 0)) for i in range(p)]


def most_memory(n: dict) -> str:
    peaks = memory_peaks(n)
    top = peaks.index(max(peaks))
    return {0: "stage-0", 1: "stage-1"}.get(top, "last-stage")


def right_answers(n: dict) -> dict[str, str]:
    return {"a": f"{balanced_bottleneck(n):g}", "b": most_memory(n),
            "c": {"ratio": "min(p, m) / min(p - i, m)",
                  "difference": "min(p, m) - min(p - i, m)"}[n["form_c"]]}


def mistakes(n: dict) -> dict[str, list]:
    """Wrong answers per part (numbers as fractions, formulas as text) for the generic tests:
    equal layer counts, the ends left out, the whole work shared out exactly."""
    even_base, extra = divmod(n["layers"], n["p"])
    even = [even_base + (1 if s < extra else 0) for s in range(n["p"])]
    total = Fraction(sum(stage_times([n["layers"]], n))).limit_denominator(1000)
    values = (max(stage_times(even, n)), balanced_bottleneck(n, False, False),
              balanced_bottleneck(n, head=False), balanced_bottleneck(n, embed=False))
    return {"a": [*(Fraction(v).limit_denominator(1000) for v in values), total / n["p"]],
            "c": {"ratio": ["p/(p-i)", "(p-1)/(p-1-i)", "1", "(p-i)/p", "min(p-i,m)/min(p,m)",
                            "m/min(p-i,m)"],
                  "difference": ["i", "0", "min(p-i,m)-min(p,m)", "i-1", "p-i",
                                 "m-min(p-i,m)"]}[n["form_c"]]}


NOTEBOOK_CELL = '''
import itertools


def stage_times(split, n):
    # F + B of one microbatch per stage: 1 + 2 per layer, plus the two ends' extras
    times = [3 * layers for layers in split]
    times[0] += n["embed_f"] + n["embed_b"]
    times[-1] += n["head_f"] + n["head_b"]
    return times


def best_bottleneck(n):
    best = None
    for cuts in itertools.combinations(range(1, n["layers"]), n["p"] - 1):
        bounds = (0, *cuts, n["layers"])
        split = [bounds[k + 1] - bounds[k] for k in range(n["p"])]
        slowest = max(stage_times(split, n))
        best = slowest if best is None else min(best, slowest)
    return best


def held(p, m, i):
    return min(p - i, m)


def stage0_against_stage_i(p, m, i):
    # the question asks for the ratio or the difference (mine["form_c"] says which)
    if mine["form_c"] == "ratio":
        return held(p, m, 0) / held(p, m, i)
    return held(p, m, 0) - held(p, m, i)


p_b = mine["p_b"]
peaks = [held(p_b, mine["m_b"], i) * (mine["split_b"][i] * mine["mib_layer"]
                                      + (mine["head_mib"] if i == p_b - 1 else 0))
         for i in range(p_b)]
top = peaks.index(max(peaks))
answers = {
    "a": best_bottleneck(mine),
    "b": {0: "stage-0", 1: "stage-1"}.get(top, "last-stage"),
    "c": stage0_against_stage_i,
}
'''
