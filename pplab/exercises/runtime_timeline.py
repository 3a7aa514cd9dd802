"""The learner's runtime as a measured timeline, beside pplab's engine on the same schedule.

``learner_timeline`` runs the learner's file (in the guard, one process per rank, as the
grader does) for a few steps and turns what every rank recorded into pplab's Event table:
forwards and backwards, each send and receive, each wait and the optimizer step, on the one
clock every process of the machine shares. ``engine_timeline`` trains the same model (same
sizes, seed, dtype and microbatches) with pplab's own executor. ``compare`` draws both, one
above the other on one time axis, and says the ratio of their last steps: the blocking
runtime waits where the overlapped one and the engine let the transfer run under compute.

    from pplab.exercises.runtime_timeline import compare
    figure, lines = compare("my_runtime.py", "blocking-gpipe")
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pplab.exercises.runtime_cases import ROWS, RuntimeCase
from pplab.exercises.runtime_lab import PARTS, spawn
from pplab.timeline.events import EventKind, events_frame

KIND, START, END, PEER, MB, STEP = range(6)
STEPS = 3  # the first step warms up; the last is the one compared
SHOWN_CASE = RuntimeCase(2, 4, 0)


def _rows(rank: int, events: list, actions: list, step: int) -> list[dict]:
    """One rank's recorded events of ``step`` as Event rows; a compute event's microbatch
    is its action's (the run was graded in the schedule's order)."""
    rows, position = [], 0
    for event in events:
        if event[STEP] != step:
            continue
        kind, microbatch = event[KIND], -1
        if kind in ("F", "B"):
            microbatch = actions[position][1] if position < len(actions) else -1
            position += 1
        rows.append({"rank": rank, "stage": rank, "kind": str(EventKind(kind if kind in
                     ("F", "B", "send", "recv", "wait") else "optim")),
                     "microbatch": microbatch, "step": step, "start": event[START],
                     "end": event[END], "source": "measured", "peer": event[PEER]})
    return rows


def _from_zero(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    origin = frame["start"].min()
    frame["start"] -= origin
    frame["end"] -= origin
    return frame


def learner_timeline(path: str | Path, part: str, case: RuntimeCase = SHOWN_CASE
                     ) -> tuple[pd.DataFrame | None, str | None]:
    """(the last step of the learner's run of ``part``, None) or (None, what went wrong)."""
    records = spawn(Path(path).resolve(), case, [part], steps=STEPS)
    if not records or records[0].problem:
        return None, records[0].problem if records else "the run gave no record"
    record = records[0]
    failed = [f"rank {r}: {run.get('error') or run.get('timed_out')}"
              for r, run in sorted(record.ranks.items()) if "error" in run or "timed_out" in run]
    if failed:
        return None, failed[0] + " (check the file: pplab exercise check runtime-lab --file F)"
    rows = [row for rank, run in record.ranks.items()
            for row in _rows(rank, run["events"], record.actions[rank], STEPS - 1)]
    return _from_zero(events_frame(rows)), None


def engine_timeline(family: str, case: RuntimeCase = SHOWN_CASE) -> pd.DataFrame:
    """The last step of pplab's engine training the same model on the same schedule."""
    from pplab.engine.launch import run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    config = case.config
    request = check_request(TrainConfig(
        schedule=family, pp_size=case.p, microbatches=case.m, steps=STEPS, layers=case.p,
        split=case.split, batch_size=ROWS * case.m, seq_len=config.seq_len,
        d_model=config.d_model, heads=config.n_heads, d_ff=config.d_ff, dtype="float64",
        seed=case.seed, out=None))
    events = run_training(request, None).events
    return _from_zero(events[events["step"] == events["step"].max()])


def step_time(events: pd.DataFrame) -> float:
    return float(events["end"].max() - events["start"].min())


def compare(path: str | Path, part: str, case: RuntimeCase = SHOWN_CASE):
    """(a figure: the learner's step above the engine's, the lines that say their step
    times and ratio); (None, [what went wrong]) when the learner's run fails."""
    from pplab.charts import gantt_stack

    family = PARTS[part][1]
    mine, problem = learner_timeline(path, part, case)
    if mine is None:
        return None, [problem]
    engine = engine_timeline(family, case)
    yours, theirs = step_time(mine), step_time(engine)
    label = f"{family} p={case.p} m={case.m}"
    figure = gantt_stack([(f"your {PARTS[part][0]} ({label})", mine),
                          (f"pplab's engine ({label})", engine)],
                         title=f"Your runtime and pplab's engine, {label}, last of {STEPS} "
                               f"steps")
    lines = [f"your {PARTS[part][0]}: {yours * 1e3:.2f} ms per step",
             f"pplab's engine: {theirs * 1e3:.2f} ms per step",
             f"ratio (yours / engine): {yours / theirs:.2f}"]
    return figure, lines
