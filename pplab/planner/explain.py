"""Why one layout ranks where it does: each other (pp, tp, dp) of the same GPU count, in words.

What it teaches: a step's time splits into compute, recomputation, tensor-parallel
all-reduces, pipeline bubble and the data-parallel all-reduce (``results.StepTime``). Two
layouts differ mostly in one of these, and that one is the reason: "pp=16: more pipeline
bubble", "tp=4: a longer data-parallel all-reduce", "does not fit: 96.2 GiB > 80 GiB",
"tp=16 crosses nodes". Each grid is represented by its fastest layout that fits.

    python -c "from pplab.planner import *; r = plan(PRESET_MODELS['gpt3-175b'],
    PRESET_CLUSTERS['dgx-a100-80gb'].with_nodes(512), 1536);
    print('\\n'.join(c.describe() for c in explain(r.best, r)))"
"""

from __future__ import annotations

from dataclasses import dataclass

from pplab.planner.results import Candidate, json_safe
from pplab.planner.search import PlanResult
from pplab.planner.specs import GB, GIB

SAME = 0.005  # step times within 0.5 % count as a tie
SECOND = 0.3  # a second reason is named when it weighs at least this share of the first

# verdicts, in the order explain lists them
REFERENCE, FASTER, EQUAL, SLOWER, TOO_BIG, EXCLUDED = (
    "reference", "faster", "equal", "slower", "does not fit", "excluded")


@dataclass(frozen=True)
class Comparison:
    """How the grid (pp, tp, dp) compares with the reference layout, and why."""

    pp: int
    tp: int
    dp: int
    verdict: str
    reason: str
    step_s: float | None
    candidate: Candidate | None

    def describe(self) -> str:
        return f"pp={self.pp} tp={self.tp} dp={self.dp}: {self.verdict}: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return json_safe({
            "pp": self.pp, "tp": self.tp, "dp": self.dp, "verdict": self.verdict,
            "reason": self.reason, "step_s": self.step_s,
            "candidate": None if self.candidate is None else self.candidate.layout.as_dict(),
        })


def _parts(candidate: Candidate) -> dict[str, float]:
    time = candidate.time
    return {"bubble": time.bubble, "tp": time.tp_comm, "recompute": time.recompute,
            "dp": time.dp_allreduce, "compute": time.compute}


def _why(part: str, worse: bool, other: Candidate, reference: Candidate) -> str:
    """The sentence for the part of the step where ``other`` differs most from ``reference``."""
    a, r = other.time, reference.time
    lo, ro = other.layout, reference.layout
    more, less = ("more", "less") if worse else ("less", "more")
    if part == "bubble":
        return (f"{more} pipeline bubble: {other.bubble_fraction:.1%} of the pipeline vs "
                f"{reference.bubble_fraction:.1%} ({lo.schedule}"
                + (f" v={lo.num_chunks}" if lo.num_chunks > 1 else "")
                + f", pp={lo.pp} with m={lo.num_microbatches} vs pp={ro.pp} with "
                f"m={ro.num_microbatches})")
    if part == "tp":
        return (f"{more} tensor-parallel all-reduce time: {a.tp_comm:.2f} s vs {r.tp_comm:.2f} s"
                f" (tp={lo.tp} with {other.memory[0].layers} layers per GPU vs tp={ro.tp} with "
                f"{reference.memory[0].layers})")
    if part == "recompute":
        if worse:
            return (f"needs {lo.recompute} recomputation to fit: {a.recompute:.2f} s vs "
                    f"{r.recompute:.2f} s recomputing")
        return (f"fits with {lo.recompute} recomputation: {a.recompute:.2f} s vs "
                f"{r.recompute:.2f} s recomputing")
    if part == "dp":
        gradients = max(stage.gradients for stage in other.memory) / GB
        return (f"a {'longer' if worse else 'shorter'} data-parallel all-reduce: "
                f"{a.dp_allreduce:.2f} s vs {r.dp_allreduce:.2f} s ({gradients:.1f} GB of "
                f"gradients per GPU over {other.traffic.dp_link}, dp={lo.dp})")
    return (f"{'a heavier' if worse else 'a lighter'} last stage: the logit layer on top of "
            f"{other.memory[-1].layers} layers vs {reference.memory[-1].layers} "
            f"({a.compute:.2f} s vs {r.compute:.2f} s of compute on the busiest rank)")


def compare(candidate: Candidate, reference: Candidate) -> tuple[str, str]:
    """(verdict, reason) of a timed ``candidate`` against a timed ``reference``."""
    delta = candidate.step_s - reference.step_s
    relative = delta / reference.step_s
    steps = f"{candidate.step_s:.2f} s vs {reference.step_s:.2f} s"
    parts, ref_parts = _parts(candidate), _parts(reference)
    diffs = {part: parts[part] - ref_parts[part] for part in parts}
    if abs(relative) < SAME:
        main = max(diffs, key=lambda part: abs(diffs[part]))
        return EQUAL, (f"within {SAME:.1%} ({steps}); it differs most in "
                       + _why(main, diffs[main] > 0, candidate, reference))
    worse = delta > 0
    order = sorted(diffs, key=diffs.get, reverse=worse)
    main, second = order[0], order[1]
    verdict = SLOWER if worse else FASTER
    reason = f"{abs(relative):.1%} {verdict} ({steps}): " + _why(main, worse, candidate,
                                                                reference)
    if (diffs[second] > 0) == worse and abs(diffs[second]) >= SECOND * abs(diffs[main]):
        reason += "; and " + _why(second, worse, candidate, reference)
    return verdict, reason


def explain(reference: Candidate, others: PlanResult) -> list[Comparison]:
    """For every (pp, tp, dp) the plan considered: does it rank above or below ``reference``, why?

    Grids that fit are represented by their fastest layout and listed fastest first; then
    those that fit under no recomputation (with what they would need), then those that break
    a rule (with the rule).
    """
    if reference.time is None:
        raise ValueError("explain needs a timed reference layout (from plan or evaluate)")
    timed, too_big, excluded = [], [], []
    rules = {e.grid: e.reason for e in others.excluded}
    for grid in others.grids():
        pp, tp, dp = grid
        if grid in rules:
            excluded.append(Comparison(pp, tp, dp, EXCLUDED, rules[grid], None, None))
            continue
        best = others.best_for(grid)
        if best is None:
            smallest = others.smallest_for(grid)
            states = max(stage.model_states for stage in smallest.memory) / GIB
            too_big.append(Comparison(
                pp, tp, dp, TOO_BIG,
                f"needs {smallest.peak_memory / GIB:.1f} GiB > {others.cluster.memory_gib:g} GiB "
                f"even with {smallest.layout.recompute} recompute (weights, gradients and "
                f"optimizer states alone {states:.1f} GiB)", None, smallest))
            continue
        if best.layout == reference.layout:
            verdict, reason = REFERENCE, "the layout explained: " + best.describe()
        else:
            verdict, reason = compare(best, reference)
            if grid == reference.layout.grid:
                reason += f"; its best layout is {best.layout.describe()}"
        timed.append(Comparison(pp, tp, dp, verdict, reason, best.step_s, best))
    timed.sort(key=lambda c: c.step_s)
    too_big.sort(key=lambda c: c.candidate.peak_memory)
    return timed + too_big + excluded
