"""Exercise ``tp-dp`` (lesson 8): what tensor and data parallelism put on the wire, and where.

Four parts, with the learner's own sizes: (a) the bytes one tensor-parallel rank sends in the
Megatron all-reduces of one step; (b) the bytes the same rank sends in its data-parallel
gradient all-reduce; (c) which parallelism to put across a slow link between two nodes,
judged by timing each layout's traffic on that link; (d) part (a) or part (b), drawn per
learner, as a formula checked at sizes the learner has not seen. Every judge works the figure
out at check time from ``pplab.formulas.parallel`` (payload bytes, ring share, alpha-beta
link time); feedback names the usual slip (payload instead of the ring's share, the forward
only, all ranks summed, one microbatch, bits) without giving the figure.

    pplab exercise show tp-dp --learner ada
    pplab exercise check tp-dp --learner ada a=123456
"""

from __future__ import annotations

import random
from fractions import Fraction

from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.judging import judge_formula
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.formulas import parallel as pf

_FRESH_POINTS = 8
GB = 1e9  # bandwidths are quoted in GB/s (10^9 bytes per second), latencies in microseconds
LAYOUTS = ("tensor", "pipeline", "data")
_MIN_MARGIN = 1.5  # the fastest layout beats the next by at least this factor: one answer
FORMULA_VARIABLES = ("L", "m", "b", "s", "h", "e", "t")
DP_VARIABLES = ("P", "e", "d")


def _draw_rank(rng: random.Random) -> dict:
    t = rng.choice((2, 4, 8))
    h = rng.choice((1024, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192))
    numbers = dict(t=t, h=h, layers=rng.randint(2, 12), m=rng.randint(2, 32),
                   b=rng.choice((1, 2, 4)), s=rng.choice((512, 1024, 2048, 4096)),
                   e=rng.choice((2, 4)), d=rng.choice((2, 4, 8)), e_g=rng.choice((2, 4)))
    # The rank's own shard of its layers (Megatron split, biases included): pplab's count.
    numbers["P"] = numbers["layers"] * pf.block_parameters(h, 4 * h, t)
    # Every ring step sends a whole number of bytes: the figures are exact integers.
    assert numbers["P"] * numbers["e_g"] % numbers["d"] == 0 and h % t == 0
    return numbers


def _slow_link_times(n: dict) -> dict[str, float]:
    """Seconds each layout keeps the slow link busy per step, by the lesson's time model."""
    bandwidth, latency = n["link_gbs"] * GB, n["link_us"] * 1e-6
    one = pf.activation_bytes(n["b2"], n["s2"], n["h2"], 2)
    g = n["gpus"]
    return {
        # tp over both nodes: every all-reduce's ring crosses the slow link
        "tensor": 4 * n["layers2"] * n["m2"] * pf.ring_allreduce_seconds(
            one, 2 * g, bandwidth, latency),
        # pp = 2 across: each microbatch's activation forward, its gradient back
        "pipeline": 2 * n["m2"] * pf.send_seconds(one, bandwidth, latency),
        # dp = 2 across: one all-reduce of the rank's gradients
        "data": pf.ring_allreduce_seconds(n["P2"] * n["e_g2"], 2, bandwidth, latency),
    }


def _draw_link(rng: random.Random) -> dict:
    while True:
        g = rng.choice((4, 8))
        h = rng.choice((1024, 2048, 2560, 4096, 5120, 6144, 8192))
        n = dict(gpus=g, h2=h, layers2=2 * rng.randint(4, 24), m2=rng.randint(4, 64),
                 b2=rng.choice((1, 2, 4)), s2=rng.choice((1024, 2048, 4096)),
                 e_g2=rng.choice((2, 4)), link_gbs=rng.choice((12.5, 25, 50)),
                 link_us=rng.choice((5, 10, 20)))
        n |= dict(P2=n["layers2"] * pf.block_parameters(h, 4 * h, g), tp_all=2 * g,
                  half_layers=n["layers2"] // 2)
        times = sorted(_slow_link_times(n).values())
        if times[1] >= _MIN_MARGIN * times[0]:
            return n


def _draw(rng: random.Random) -> dict:
    return _draw_rank(rng) | _draw_link(rng) | {"form_d": rng.choice(("tp", "dp"))}


def tp_bytes_per_rank(layers: int, m: int, b: int, s: int, h: int, e: int, t: int) -> int:
    """What one rank sends in the tp all-reduces of a step: pplab's payload over all ranks,
    one rank's share of it, and the ring's 2 (t-1)/t of that."""
    payload = pf.tp_allreduce_bytes(layers, m, b, s, h, t, 1, e) // t
    return pf.ring_wire_bytes(payload, t)


def _own_tp(v: Variant) -> int:
    return tp_bytes_per_rank(v["layers"], v["m"], v["b"], v["s"], v["h"], v["e"], v["t"])


def _tp_mistakes(v: Variant) -> list[tuple[Fraction, str]]:
    truth, t = Fraction(_own_tp(v)), v["t"]
    payload = truth * t / (2 * (t - 1))
    return [
        (payload, "that is the payload this rank hands to its all-reduces; a ring puts "
                  "2(n-1)/n of each all-reduce's tensor on every rank's link"),
        (payload * t, "that is the payload summed over the t ranks of the group; the question "
                      "asks what one rank sends"),
        (truth / 2, "half of it: either the backward's two f all-reduces per layer are "
                    "missing, or the ring counts only its reduce-scatter half"),
        (truth * t, "a ring step sends 1/n of the tensor: you multiplied by 2(n-1) without "
                    "dividing by n"),
        (truth / v["m"], "that is one microbatch; the step runs m of them"),
        (truth / v["layers"], "that is one layer; the rank holds several"),
        (truth / v["e"], "that counts elements; each is e bytes"),
        (truth * 8, "that is bits; the question asks for bytes"),
    ]


def _judge_number(answer: Fraction, truth: int, mistakes, what: str, right_text: str):
    if answer == truth:
        return right(right_text)
    for value, message in mistakes:
        if answer == value:
            return wrong(message)
    return wrong(f"work it out from the lesson's counts: {what}",
                 hint=f"{answer} is too {'high' if answer > truth else 'low'}")


def judge_tp_bytes(v: Variant, answer) -> object:
    truth = _own_tp(v)
    count = 4 * v["layers"] * v["m"]
    one = pf.activation_bytes(v["b"], v["s"], v["h"], v["e"])
    return _judge_number(
        Fraction(answer), truth, _tp_mistakes(v),
        "how many all-reduces, of how many bytes, and a ring's share of each",
        f"right: {count} all-reduces of {one:,} bytes, of which a ring sends "
        f"2({v['t']}-1)/{v['t']} from each rank: {truth:,} bytes per step "
        f"(pplab.formulas.parallel)")


def _dp_truth(v: Variant) -> int:
    return pf.ring_wire_bytes(v["P"] * v["e_g"], v["d"])


def judge_dp_bytes(v: Variant, answer) -> object:
    truth, d, t = Fraction(_dp_truth(v)), v["d"], v["t"]
    payload = Fraction(v["P"] * v["e_g"])
    mistakes = [
        (payload, "that is the gradient bucket itself; a ring sends 2(n-1)/n of it from each "
                  "rank"),
        (payload * 2 * (t - 1) / t, "the gradient all-reduce runs over the d data-parallel "
                                     "replicas, not the tensor-parallel group"),
        (truth * v["m"], "gradients are all-reduced once per step, after the last backward, "
                         "not once per microbatch"),
        (truth * d, "a ring step sends 1/n of the bucket: you multiplied by 2(n-1) without "
                    "dividing by n"),
        (truth / 2, "half of it: an all-reduce is a reduce-scatter and then an all-gather"),
        (payload * d, "that is the payload summed over the replicas; the question asks what "
                      "one rank sends"),
        (truth / v["e_g"], "that counts gradients; each is e_g bytes"),
    ]
    return _judge_number(
        Fraction(answer), int(truth), mistakes,
        "the bucket's bytes, and a ring's share of it over the replicas",
        f"right: one all-reduce of {int(payload):,} bytes of gradients over {d} replicas; a "
        f"ring sends {int(truth):,} bytes from each rank, once per step "
        f"(pplab.formulas.parallel)")


def judge_slow_link(v: Variant, choice: str) -> object:
    times = _slow_link_times(dict(v.numbers))
    best = min(times, key=times.__getitem__)
    shown = lambda name: f"{times[name] * 1e3:.3g} ms"  # noqa: E731
    if choice == best:
        others = ", ".join(f"{name} {shown(name)}" for name in LAYOUTS if name != best)
        return right(f"right: {best} keeps each slow link busy {shown(best)} per step, "
                     f"against {others} (alpha-beta model, pplab.formulas.parallel)")
    if choice == "tensor":
        return wrong("tensor parallelism all-reduces 4 times per layer per microbatch, inside F "
                     "and B; across the slow link every one of them waits on it",
                     hint=f"it keeps the link busy {shown('tensor')} per step")
    what = ("activations and their gradients, 2 per microbatch" if choice == "pipeline"
            else "every gradient of the rank's shard, once per step")
    return wrong(f"{choice} sends {what}; time each layout's traffic on the slow link with the "
                 f"question's model and compare",
                 hint=f"{choice} keeps the link busy {shown(choice)} per step")


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    points = []
    for _ in range(_FRESH_POINTS):
        t = rng.choice((2, 4, 8))
        points.append({"L": rng.randint(1, 16), "m": rng.randint(1, 16),
                       "b": rng.randint(1, 8), "s": 128 * rng.randint(1, 16),
                       "h": 64 * t * rng.randint(1, 8), "e": rng.choice((2, 4)), "t": t})
    return points


def _formula_mistakes() -> list[tuple[object, str]]:
    def payload(L, m, b, s, h, e, t):
        return 4 * L * m * b * s * h * e

    return [
        (payload, "that is the payload the rank hands to its all-reduces; a ring sends "
                  "2(n-1)/n of each"),
        (lambda L, m, b, s, h, e, t: payload(L, m, b, s, h, e, t) * t,
         "that is the payload summed over the t ranks (pplab's all-rank count); the question "
         "asks what one rank sends"),
        (lambda L, m, b, s, h, e, t: payload(L, m, b, s, h, e, t) * (t - 1) / t,
         "half of it: either the backward's f all-reduces are missing, or the ring counts only "
         "its reduce-scatter half"),
        (lambda L, m, b, s, h, e, t: payload(L, m, b, s, h, e, t) * 2 * (t - 1),
         "a ring step sends 1/n of the tensor: divide by n"),
        (lambda L, m, b, s, h, e, t: payload(1, m, b, s, h, e, t) * 2 * (t - 1) / t,
         "that is one layer; multiply by the rank's L layers"),
        (lambda L, m, b, s, h, e, t: payload(L, 1, b, s, h, e, t) * 2 * (t - 1) / t,
         "that is one microbatch; the step runs m of them"),
        (lambda L, m, b, s, h, e, t: payload(L, m, b, s, h, 1, t) * 2 * (t - 1) / t,
         "that counts elements; each is e bytes"),
        (lambda L, m, b, s, h, e, t: payload(L, m, b, s, h, e, t) * 16 * (t - 1) / t,
         "that is bits; the question asks for bytes"),
    ]


def _dp_points(v: Variant) -> list[dict]:
    rng = v.rng("formula-dp")
    points = []
    for _ in range(_FRESH_POINTS):  # P a multiple of d: every ring step a whole number of bytes
        d = rng.randint(2, 16)
        points.append({"P": d * rng.randint(10**5, 10**8), "e": rng.choice((2, 4)), "d": d})
    return points


def _judge_dp_formula(v: Variant, function) -> object:
    return judge_formula(
        function, DP_VARIABLES, _dp_points(v),
        lambda point: pf.ring_wire_bytes(int(point["P"]) * int(point["e"]), int(point["d"])),
        [(lambda P, e, d: P * e, "that is the gradient bucket itself; a ring sends 2(n-1)/n of "
                                 "it from each rank"),
         (lambda P, e, d: 2 * (d - 1) * P * e, "a ring step sends 1/n of the bucket: divide "
                                               "by n"),
         (lambda P, e, d: (d - 1) * P * e / d, "half of it: an all-reduce is a reduce-scatter "
                                               "and then an all-gather"),
         (lambda P, e, d: P * e * d, "that is the payload summed over the replicas; the "
                                     "question asks what one rank sends"),
         (lambda P, e, d: 2 * (d - 1) * P / d, "that counts gradients; each is e bytes")],
        source="pplab's counts (pplab.formulas.parallel)", verb="counts", unit="bytes",
        tolerance=1e-9)


def judge_tp_formula(v: Variant, function) -> object:
    if v["form_d"] == "dp":
        return _judge_dp_formula(v, function)
    return judge_formula(
        function, FORMULA_VARIABLES, _fresh_points(v),
        lambda point: tp_bytes_per_rank(*(int(point[k]) for k in FORMULA_VARIABLES)),
        _formula_mistakes(), source="pplab's counts (pplab.formulas.parallel)", verb="counts",
        unit="bytes", tolerance=1e-9)


EXERCISE = register(Exercise(
    id="tp-dp", title="Lesson 8: what moves on the wire", lesson="08-tensor-and-data-parallel",
    intro="Megatron tensor parallelism, ring all-reduces, forward and full backward (B) for "
          "every microbatch; bytes are what a rank sends over its links, in bytes.",
    draw=_draw,
    parts=(
        NumberPart("a", "A rank of a tensor-parallel group of t = {t} ranks holds {layers} "
                        "transformer layers of hidden size h = {h}. Each step it runs m = {m} "
                        "microbatches of b = {b} sequences of s = {s} tokens; activations have "
                        "e = {e} bytes per element. How many bytes does this rank send in the "
                        "tensor-parallel all-reduces of one step?",
                   judge_tp_bytes, whole=True, unit="bytes", low=0, high=10**15),
        NumberPart("b", "The same rank is one of d = {d} data-parallel replicas. It holds "
                        "P = {P} parameters (its shard of its layers) and all-reduces their "
                        "gradients, e_g = {e_g} bytes each, over the replicas with a ring. How "
                        "many bytes does it send in the gradient all-reduce of one step?",
                   judge_dp_bytes, whole=True, unit="bytes", low=0, high=10**15),
        ChoicePart("c", "Two nodes of {gpus} GPUs train a model of {layers2} layers, h = {h2}, "
                        "m = {m2} microbatches of b = {b2} sequences of s = {s2} tokens per "
                        "step, activations in 2 bytes, gradients in {e_g2} bytes. Inside a "
                        "node the links are fast; each GPU's link to the other node carries "
                        "{link_gbs:g} GB/s after {link_us} us of latency. Time model: a message "
                        "of N bytes takes latency + N / bandwidth; a ring all-reduce over k "
                        "ranks runs 2(k-1) such steps of N/k bytes, as slow as its slowest "
                        "link; transfers do not overlap. Which layout keeps each slow link "
                        "busy for the least time per step?",
                   judge_slow_link, options=(
                       ("tensor", "tp = {tp_all} across both nodes"),
                       ("pipeline", "tp = {gpus} inside each node, 2 pipeline stages of "
                                    "{half_layers} layers, one per node"),
                       ("data", "tp = {gpus} inside each node over all the layers (P = {P2} "
                                "parameters per GPU), 2 data-parallel replicas, one per node"))),
        FormulaPart("d", "", judge_tp_formula, variables=FORMULA_VARIABLES + ("P", "d"), forms=(
            Form("tp", "Write part (a) for any sizes: the bytes one rank of a tensor-parallel "
                       "group of t ranks sends per step, as a formula in L (its layers), m, b, "
                       "s, h, e and t. It is checked at sizes you have not seen.",
                 FORMULA_VARIABLES),
            Form("dp", "Write part (b) for any sizes: the bytes one of d data-parallel "
                       "replicas sends in the gradient all-reduce of one step, as a formula in "
                       "P (its parameters), e (bytes per gradient) and d. It is checked at "
                       "sizes you have not seen.", DP_VARIABLES))),
    ),
))
