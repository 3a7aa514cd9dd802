"""Exercise ``stage-split`` (lesson 5): where to cut the model, and what each stage then holds.

Three parts, with the learner's own layers, stages, microbatches and costs: (a) the slowest
stage of the split whose simulated 1F1B step is shortest, checked by searching every split at
check time (``pplab.teaching.stage_split``) and simulating the learner's claim; (b) which stage of
another pipeline, cut unevenly, holds the most activation memory under 1F1B, from the
simulator's count of microbatches held times what one microbatch saves on each stage; (c)
stage 0's activation memory against stage i's under 1F1B as a formula (drawn per learner: the
ratio or the difference), against the simulator at fresh values, some with fewer microbatches
than stages. Feedback names the usual mistakes
(equal layer counts, forgetting the head or the embedding, the ideal share, the head stage
"holding the most") without giving the answer.

    pplab exercise show stage-split --learner ada
    pplab exercise check stage-split --learner ada a=12
"""

from __future__ import annotations

import random

from pplab.engine.request import split_layers
from pplab.exercises.core import Exercise, Variant, register, right, same_number, wrong
from pplab.exercises.judging import judge_formula, simulated
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.teaching.stage_split import (
    LayerCosts,
    best_bottlenecks,
    best_split,
    fastest_with_bottleneck,
    min_bottleneck,
)

CHOICES = ("stage-0", "stage-1", "last-stage")
_FRESH_POINTS = 8
_DRAWS_KEPT = 256


def _costs(n: dict, embed: bool = True, head: bool = True) -> LayerCosts:
    return LayerCosts(1.0, 2.0, n["embed_f"] * embed, n["embed_b"] * embed,
                      n["head_f"] * head, n["head_b"] * head)


def _even_bottleneck(n: dict) -> float:
    return max(_costs(n).stage_times(split_layers(n["layers"], n["p"])))


def _split_part(rng: random.Random) -> dict:
    """Part (a): a pipeline where balancing the slowest stage is what the shortest step
    needs (true when m is large against p, checked here), and the usual mistakes differ."""
    while True:
        p = rng.randint(3, 6)
        n = dict(p=p, layers=rng.randint(2 * p, min(4 * p, 20)), m=rng.randint(2 * p, 4 * p),
                 embed_f=rng.choice((0, 0.5, 1)), head_f=rng.choice((1, 1.5, 2, 3)))
        n["embed_b"] = n["embed_f"] * rng.choice((1, 2))
        n["head_b"] = n["head_f"] * rng.choice((1, 2))
        balanced = min_bottleneck(_costs(n), n["layers"], p)
        mistakes = {_even_bottleneck(n), min_bottleneck(_costs(n, False, False), n["layers"], p),
                    min_bottleneck(_costs(n, head=False), n["layers"], p)}
        if any(same_number(balanced, x) for x in mistakes):
            continue
        # One answer only: every split that ties the shortest step has this slowest stage.
        tied = best_bottlenecks(_costs(n), n["layers"], p, n["m"])
        if len(tied) == 1 and same_number(tied[0], balanced):
            return n


def _memory_part(rng: random.Random) -> dict:
    """Part (b): an uneven split whose largest peak is on one stage only, drawn so the
    answer is stage 0, stage 1 or the last stage about equally often."""
    target = rng.choice(CHOICES)
    while True:
        p = rng.randint(3, 5)
        n = dict(p_b=p, m_b=rng.randint(p, 3 * p), mib_layer=rng.choice((1, 2, 3)),
                 split_b=tuple(rng.randint(1, 4) for _ in range(p)))
        n["head_mib"] = n["mib_layer"] * rng.randint(1, 8)
        peaks = _memory_peaks(n)
        top = max(peaks)
        where = [s for s, x in enumerate(peaks) if x == top]
        if len(where) == 1 and where[0] == {"stage-0": 0, "stage-1": 1}.get(target, p - 1):
            return n | {"split_b_text": ",".join(map(str, n["split_b"])), "last_b": p - 1}


_drawn: dict[tuple, dict] = {}  # every check draws again; the search makes a draw dear


def _draw(rng: random.Random) -> dict:
    key = rng.getstate()
    if key not in _drawn:
        if len(_drawn) >= _DRAWS_KEPT:
            _drawn.pop(next(iter(_drawn)))
        _drawn[key] = _split_part(rng) | _memory_part(rng) | {
            "form_c": rng.choice(("ratio", "difference"))}
    return dict(_drawn[key])


def judge_bottleneck(v: Variant, answer) -> object:
    n, claim = dict(v.numbers), float(answer)
    costs, layers, p, m = _costs(n), n["layers"], n["p"], n["m"]
    best = best_split(costs, layers, p, m)
    found = fastest_with_bottleneck(costs, layers, p, m, claim)
    if found is not None and same_number(found[1], best.step_time):
        return right(f"right: cut {','.join(map(str, found[0]))}, the slowest stage takes "
                     f"{claim:g} cost units per microbatch and the step {found[1]:g}, the "
                     f"shortest of all {best.splits} splits (predicted by the simulator)")
    if same_number(claim, _even_bottleneck(n)):
        return wrong("that is the slowest stage when the layer counts are as equal as they go "
                     "(pplab's default split); the embedding and the head make the end stages "
                     "dearer, so the shortest step moves layers away from them")
    if same_number(claim, min_bottleneck(_costs(n, head=False), layers, p)):
        return wrong("you left out what the head and the loss add to the last stage")
    if same_number(claim, min_bottleneck(_costs(n, False, False), layers, p)):
        return wrong("you counted the layers only: the first stage also runs the embedding "
                     "and the last the head and the loss")
    if same_number(claim, min_bottleneck(_costs(n, embed=False), layers, p)) \
            and n["embed_f"] + n["embed_b"] > 0:
        return wrong("you left out what the embedding adds to stage 0")
    if same_number(claim, sum(costs.stage_times([layers])) / p):
        return wrong("that is the whole model's work shared out exactly; layers are whole, so "
                     "no split gets there")
    if found is None:
        fastest = min_bottleneck(costs, layers, p)
        return wrong("no split of your layers has a slowest stage of exactly that (F + B of "
                     "one microbatch, in cost units)",
                     hint="no split is that fast" if claim < fastest else
                     "add up each stage's layers, its extras, forward and backward")
    return wrong("a split with that slowest stage exists, but another split's step is "
                 "shorter",
                 hint=f"the best such split takes {found[1]:g} cost units per step; the "
                      f"shortest step takes {best.step_time:g} (predicted)")


def _memory_peaks(n: dict) -> list[float]:
    """Each stage's activation memory at its peak (MiB): microbatches held there, as the
    simulator counts them, times what one microbatch saves on that stage."""
    p, split = n["p_b"], n["split_b"]
    held = simulated("1f1b", p, n["m_b"])["peak_activations"]
    return [held[s] * (split[s] * n["mib_layer"] + (n["head_mib"] if s == p - 1 else 0))
            for s in range(p)]


def judge_most_memory(v: Variant, choice: str) -> object:
    n = dict(v.numbers)
    peaks = _memory_peaks(n)
    last = n["p_b"] - 1
    top = max(range(len(peaks)), key=peaks.__getitem__)
    stage_of = {"stage-0": 0, "stage-1": 1, "last-stage": last}
    if choice in stage_of and stage_of[choice] == top:
        held = simulated("1f1b", n["p_b"], n["m_b"])["peak_activations"][top]
        return right(f"right: stage {top} peaks at {peaks[top]:g} MiB, holding {held} "
                     f"microbatch{'' if held == 1 else 'es'} at once (the simulator's count) "
                     f"of {peaks[top] / held:g} MiB each")
    if choice == "all-equal":
        return wrong("under 1F1B the stages hold different numbers of microbatches at their "
                     "peak, and here they hold different layers too")
    chosen = stage_of[choice]
    hint = f"stage {chosen} peaks at {peaks[chosen]:g} MiB (predicted)"
    if chosen == last:
        return wrong("the head makes one microbatch dearer on the last stage, but under 1F1B "
                     "the last stage holds the fewest microbatches at its peak", hint=hint)
    if chosen == 0:
        return wrong("stage 0 holds the most microbatches, but that alone does not make the "
                     "most memory: multiply what each stage holds by what one microbatch "
                     "saves there", hint=hint)
    return wrong("multiply the microbatches each stage holds at its peak by what one "
                 "microbatch saves there, head included", hint=hint)


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    points = []
    for _ in range(_FRESH_POINTS):
        p = rng.randint(2, 12)
        points.append({"p": p, "m": rng.randint(p, 3 * p), "i": rng.randint(1, p - 1)})
    for _ in range(3):  # fewer microbatches than stages: only some stages fill up
        p = rng.randint(5, 12)
        points.append({"p": p, "m": rng.randint(2, p - 2), "i": rng.randint(1, p - 1)})
    return points


def _ratio_simulated(point: dict) -> float:
    peaks = simulated("1f1b", int(point["p"]), int(point["m"]))["peak_activations"]
    return peaks[0] / peaks[int(point["i"])]


def _difference_simulated(point: dict) -> float:
    peaks = simulated("1f1b", int(point["p"]), int(point["m"]))["peak_activations"]
    return float(peaks[0] - peaks[int(point["i"])])


def _judge_difference(v: Variant, function) -> object:
    return judge_formula(
        function, ("p", "m", "i"), _fresh_points(v), truth=_difference_simulated,
        misconceptions=[
            (lambda p, m, i: i, "right while the step has at least p microbatches; look at a "
                                "step with fewer microbatches than stages"),
            (lambda p, m, i: 0, "equal layers do not mean equal memory under 1F1B: the stages "
                                "hold different numbers of microbatches at their peaks"),
            (lambda p, m, i: min(p - i, m) - min(p, m), "that is stage i less stage 0, the "
                                                        "other way round"),
            (lambda p, m, i: i - 1, "each stage starts one more forward than its warm-up "
                                    "before its first backward, stage 0 and stage i alike"),
        ])


def judge_ratio_formula(v: Variant, function) -> object:
    if v["form_c"] == "difference":
        return _judge_difference(v, function)
    return judge_formula(
        function, ("p", "m", "i"), _fresh_points(v), truth=_ratio_simulated,
        misconceptions=[
            (lambda p, m, i: p / (p - i),
             "right while the step has at least p microbatches; look at a step with fewer "
             "microbatches than stages"),
            (lambda p, m, i: (p - 1) / (p - 1 - i),
             "you counted the warm-up forwards only; each stage starts one more forward "
             "before its first backward"),
            (lambda p, m, i: 1,
             "equal layers do not mean equal memory under 1F1B: the stages hold different "
             "numbers of microbatches at their peaks"),
            (lambda p, m, i: (p - i) / p, "that is stage i over stage 0, the other way round"),
            (lambda p, m, i: min(p - i, m) / min(p, m),
             "that is stage i over stage 0, the other way round"),
            (lambda p, m, i: m / min(p - i, m),
             "that is GPipe's peak over 1F1B's on stage i (lesson 2); compare two stages of "
             "one 1F1B pipeline"),
        ])


EXERCISE = register(Exercise(
    id="stage-split", title="Lesson 5: cutting a model into stages",
    lesson="05-cutting-a-model-into-stages",
    intro="Stages count from 0; a stage is a contiguous run of at least one layer. The "
          "pipelines run 1F1B, one stage per rank, and messages are free.",
    draw=_draw,
    parts=(
        NumberPart("a", "A model of {layers} layers is cut into p = {p} stages and runs "
                        "m = {m} microbatches per step. One microbatch's forward costs 1 and "
                        "its backward 2 cost units per layer; stage 0 also runs the "
                        "embedding, which adds {embed_f:g} to its forward and {embed_b:g} to "
                        "its backward; the last stage also runs the final norm, the head and "
                        "the loss, which add {head_f:g} to its forward and {head_b:g} to its "
                        "backward. Of all the ways to cut the layers, take the one whose "
                        "simulated step is shortest. How long does its slowest stage take "
                        "per microbatch (forward plus backward), in cost units?",
                   judge_bottleneck, low=0, high=10**6),
        ChoicePart("b", "Another pipeline of p = {p_b} stages runs m = {m_b} microbatches "
                        "per step, cut {split_b_text} (layers per stage, stage 0 first). One "
                        "microbatch saves {mib_layer} MiB of activations in each layer it "
                        "passes, and {head_mib} MiB more in the head and loss of the last "
                        "stage. Which stage holds the most activation memory at its peak?",
                   judge_most_memory, options=(
                       ("stage-0", "stage 0, the first"),
                       ("stage-1", "stage 1, the second"),
                       ("last-stage", "stage {last_b}, the last, with the head"),
                       ("all-equal", "all stages hold the same"))),
        FormulaPart("c", "", judge_ratio_formula, variables=("p", "m", "i"), forms=(
            Form("ratio", "When stage 0 and stage i hold the same layers (leave the embedding "
                          "and the head out), how many times as much activation memory does "
                          "stage 0 hold at its peak under 1F1B as stage i? Write it as a "
                          "formula in p, m and i; it is checked against the simulator at "
                          "values you have not seen, some with fewer microbatches than stages.",
                 ("p", "m", "i")),
            Form("difference", "When stage 0 and stage i hold the same layers (leave the "
                               "embedding and the head out), how many more microbatches' "
                               "activations does stage 0 hold at its peak under 1F1B than "
                               "stage i? Write it as a formula in p, m and i; it is checked "
                               "against the simulator at values you have not seen, some with "
                               "fewer microbatches than stages.", ("p", "m", "i")))),
    ),
))
