"""Reference answers of exercise ``staleness`` (lesson 7), from the papers' closed forms.

PipeDream (Narayanan et al., SOSP 2019, Sec. 3.3): in 1F1B's steady state stage i of p has
p - i microbatches in flight, each on its own version, and its gradient is p - 1 - i updates
old (the paper's W_1^(t-n+1) ... W_n^(t), stages counted from 1 there). PipeDream-2BW
(Narayanan et al., ICML 2021, Sec. 3.1): two versions on every stage, and a delay of one on
every stage, the last included.
"""

from __future__ import annotations

from fractions import Fraction


def right_answers(n: dict) -> dict[str, str]:
    p = n["p"]
    return {"a": str(p - 1 - n["i"]), "b": str((p - n["j"]) * n["w_mib"]),
            "c": {"more": "p*(p+1)/2 - 2*p", "delays": "p*(p-1)/2"}[n["form_c"]],
            "d": "last" if n["family"] == "pipedream" else "none"}


def mistakes(n: dict) -> dict[str, list]:
    """The usual wrong answers, for tests/test_exercises.py: stages counted from 1, the live
    weights left out, the first stage's figure, 2BW's rule used for PipeDream."""
    p, i, j, w = n["p"], n["i"], n["j"], n["w_mib"]
    return {"a": [Fraction(p - i), Fraction(p - 1), Fraction(1), Fraction(i)],
            "b": [w * Fraction(x) for x in (p - j - 1, p - j + 1, p, 2)],
            "c": {"more": ["p*(p+1)/2", "p*(p+1)/2 - p", "p*(p+1)/2 - 3*p", "p*p - 2*p",
                           "p*(p-1)/2", "p - 2"],
                  "delays": ["p*(p+1)/2", "p - 1", "p*(p-1)", "0", "p*p/2"]}[n["form_c"]]}


NOTEBOOK_CELL = '''
def pipedream_delay(p, i):
    # stage i runs p - 1 - i warm-up forwards: that many backwards (updates) come between a
    # microbatch's forward and its backward
    return p - 1 - i


def pipedream_versions(p, j):
    return p - j  # one per microbatch in flight (the newest is the live weights)


def formula_c(p):
    if mine["form_c"] == "more":
        # PipeDream's peaks summed over the stages, less two versions on each stage under 2BW
        return sum(pipedream_versions(p, s) for s in range(p)) - 2 * p
    return sum(pipedream_delay(p, s) for s in range(p))  # every stage's delay, added up


answers = {
    "a": pipedream_delay(mine["p"], mine["i"]),
    "b": pipedream_versions(mine["p"], mine["j"]) * mine["w_mib"],
    "c": formula_c,
    "d": "last" if mine["family"] == "pipedream" else "none",
}
'''
