"""Exercise ``staleness`` (lesson 7): how stale each stage's gradient is, and what stashing costs.

Four parts, with the learner's own p, m and stages: (a) how many updates old the gradient is
that stage i applies under PipeDream once the pipe is full; (b) how many MiB of weight
versions stage j holds at most under PipeDream; (c) a formula in p checked at fresh p, drawn
per learner: how many more versions a pipeline holds at its peaks under PipeDream than under
PipeDream-2BW, or the delays of all its stages added up; (d) which stages apply a gradient
with no delay under PipeDream or under 2BW. Every judge builds the schedule at the learner's
numbers and walks its version bookkeeping (``pplab.schedules.pipedream``: the versions each F
and B run with, the updates between them) when the answer comes in. Feedback names the usual
mistakes: stages counted from 1, the live weights left out, one family's rule used for the
other.

    pplab exercise show staleness --learner ada
"""

from __future__ import annotations

import random
from fractions import Fraction

from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.judging import judge_formula
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.schedules import build
from pplab.schedules.pipedream import steady_delay, versions_held

LABELS = {"pipedream": "PipeDream", "pipedream-2bw": "PipeDream-2BW"}
_FRESH_POINTS = 6
_NO_DELAY = {"first": "only stage 0, the first", "last": "only the last stage",
             "every": "every stage", "none": "no stage"}


def _draw(rng: random.Random) -> dict:
    p = rng.randint(4, 12)
    i = rng.randint(0, p - 2)
    # not the last stage: it holds one version, the size the question gives
    j = rng.choice([s for s in range(p - 1) if s != i])
    family = rng.choice(tuple(LABELS))
    return dict(p=p, m=rng.randint(p, 2 * p), i=i, j=j, w_mib=rng.choice((64, 96, 128, 192, 256)),
                p_d=rng.randint(3, 8), family=family, label=LABELS[family],
                form_c=rng.choice(("more", "delays")))


def _schedule(name: str, p: int, m: int | None = None):
    """Enough steps that every stage reaches its steady state (the pipe is full)."""
    m = p if m is None else m
    return build(name, p, m, num_steps=max(3, -(-3 * p // m)))


def judge_delay(v: Variant, answer) -> object:
    p, i, delay = v["p"], v["i"], int(answer)
    truth = steady_delay(_schedule("pipedream", p, v["m"]), i)
    if delay == truth:
        return right(f"right: once the pipe is full, each update of stage {i} applies a "
                     f"gradient computed {truth} updates earlier (walked through PipeDream's "
                     f"order at p = {p}, m = {v['m']})")
    if delay == truth + 1:
        return wrong("one too many: stages count from 0 here, and the newest version is the "
                     "one the forward saw, not one before it")
    if delay == 1 and truth != 1:
        return wrong("a delay of one on every stage is the double-buffered variant's rule; "
                     "PipeDream's depends on the stage")
    if delay == p - 1 and truth != p - 1:
        return wrong("that is the first stage's delay; count the updates between stage "
                     f"{i}'s forward and its backward")
    if delay == i and truth != i:
        return wrong("the delay shrinks towards the end of the pipe, not towards its start")
    # No numeric hint: the right values are small whole numbers that any number in a hint
    # could give away. Counting in the lesson's table of versions is the way.
    return wrong("count how many backwards (each one an update) stage "
                 f"{i} runs between a microbatch's forward and its backward")


def judge_versions(v: Variant, answer) -> object:
    p, j, size = v["p"], v["j"], v["w_mib"]
    truth = versions_held(_schedule("pipedream", p, v["m"]))[j]
    if Fraction(answer) % size:
        return wrong(f"each version is a whole copy of the stage's {size} MiB of weights: the "
                     f"answer is a multiple of {size}")
    held = int(Fraction(answer) / size)
    if held == truth:
        versions = "version" if truth == 1 else "versions"
        return right(f"right: stage {j} holds at most {truth} weight {versions} of {size} MiB "
                     f"under PipeDream (its live weights and the stashed ones, walked through "
                     f"the order)")
    if held == truth - 1:
        return wrong("count the live weights too: the newest version is held as well as "
                     "the stashed ones (or: stages count from 0)")
    if held == 2 and truth != 2:
        return wrong("two versions per stage is the double-buffered variant; PipeDream "
                     "stashes one per microbatch in flight")
    if held == p and truth != p:
        return wrong("that is the first stage's count; later stages have fewer microbatches "
                     "in flight")
    return wrong(f"count the microbatches in flight on stage {j} in the steady state, "
                 f"each on its own version")


def _total(name: str, p: int) -> int:
    return sum(versions_held(_schedule(name, p)).values())


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    return [{"p": p} for p in sorted(rng.sample(range(2, 17), _FRESH_POINTS))]


def _total_delay(p: int) -> int:
    schedule = _schedule("pipedream", p)
    return sum(steady_delay(schedule, stage) for stage in range(p))


def judge_total(v: Variant, function) -> object:
    pipedream = lambda p: p * (p + 1) / 2  # noqa: E731  the mistakes' building blocks
    if v["form_c"] == "delays":
        return judge_formula(
            function, ("p",), _fresh_points(v), truth=lambda point: _total_delay(int(point["p"])),
            misconceptions=[
                (lambda p: pipedream(p), "stages count from 0 and the last applies fresh "
                                         "gradients: each delay is one less than that"),
                (lambda p: p - 1, "that is 2BW's rule, a delay of one on every stage; "
                                  "PipeDream's delay depends on the stage"),
                (lambda p: p * (p - 1), "that counts every stage as stage 0; later stages "
                                        "wait fewer updates"),
                (lambda p: 0, "without a flush some stage always updates while microbatches "
                              "run on its older weights"),
            ], source="the delays walked along PipeDream's order", verb="give")
    return judge_formula(
        function, ("p",), _fresh_points(v),
        truth=lambda point: _total("pipedream", int(point["p"]))
        - _total("pipedream-2bw", int(point["p"])),
        misconceptions=[
            (lambda p: pipedream(p), "that is PipeDream's total; the question asks how many "
                                     "more than 2BW's"),
            (lambda p: pipedream(p) - p, "2BW holds two versions on every stage, its live "
                                         "weights and one shadow copy, not one"),
            (lambda p: pipedream(p) - 3 * p, "count the live weights of every stage under "
                                             "PipeDream too"),
            (lambda p: p * p - 2 * p, "later stages hold fewer versions than stage 0: not p "
                                      "on every stage"),
        ], source="the versions counted along both schedules' orders", verb="give")


def _without_delay(name: str, p: int) -> str:
    schedule = _schedule(name, p)
    fresh = [s for s in range(p) if steady_delay(schedule, s) == 0]
    if not fresh:
        return "none"
    if len(fresh) == p:
        return "every"
    return "first" if fresh == [0] else "last"


def judge_no_delay(v: Variant, choice: str) -> object:
    truth = _without_delay(v["family"], v["p_d"])
    other = "pipedream" if v["family"] == "pipedream-2bw" else "pipedream-2bw"
    if choice == truth:
        return right(f"right: under {v['label']} at p = {v['p_d']}, {_NO_DELAY[truth]} "
                     f"applies fresh gradients once the pipe is full (walked through the order)")
    if choice == _without_delay(other, v["p_d"]):
        return wrong(f"that is true of {LABELS[other]}, not of {v['label']}")
    if choice == "every":
        return wrong("without a flush some stage always updates while microbatches run on "
                     "its older weights")
    return wrong("follow one microbatch: which version each stage's forward and backward use, "
                 "and how many updates that stage made in between")


EXERCISE = register(Exercise(
    id="staleness", title="Lesson 7: PipeDream, stashing and staleness",
    lesson="07-pipedream-and-staleness",
    intro="Stages count from 0; the pipelines run 1F1B without a flush. A stage's weight "
          "version counts its optimizer updates so far. Answer for the steady state, once "
          "the pipe is full.",
    draw=_draw,
    parts=(
        NumberPart("a", "Under PipeDream with p = {p} stages and m = {m} microbatches per "
                        "step, how many updates old is the gradient that stage {i} applies "
                        "in each of its updates?", judge_delay, whole=True, low=0, high=10**4),
        NumberPart("b", "Under the same PipeDream pipeline, one version of stage {j}'s weights "
                        "takes {w_mib} MiB. How many MiB of weights does stage {j} hold at "
                        "most at once, its live weights and the stashed versions together?",
                   judge_versions, whole=True, unit="MiB", low=0, high=10**7),
        FormulaPart("c", "", judge_total, variables=("p",), forms=(
            Form("more", "A pipeline of p stages runs p microbatches per step. Summed over its "
                         "stages, how many more weight versions does it hold at the peaks "
                         "under PipeDream than under PipeDream-2BW? Write it as a formula in "
                         "p (checked against the schedules' bookkeeping at values of p you "
                         "have not seen).", ("p",)),
            Form("delays", "A PipeDream pipeline of p stages runs p microbatches per step. "
                           "Summed over its stages, how many updates old are the gradients "
                           "applied once the pipe is full (each stage's delay, added up)? "
                           "Write it as a formula in p (checked against the schedule's "
                           "bookkeeping at values of p you have not seen).", ("p",)))),
        ChoicePart("d", "Under {label} with p = {p_d} stages, which stages apply gradients "
                        "with no delay (computed on the weights they update)?",
                   judge_no_delay, options=tuple(_NO_DELAY.items())),
    ),
))
