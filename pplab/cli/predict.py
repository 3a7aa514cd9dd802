"""``pplab predict``: a recorded run's step, predicted from the costs the run itself measured.

What it teaches: a cost model earns trust by replaying what it was fitted on. Without
options, ``pplab predict RUN`` replays the run's own schedule and prints the predicted step
time and bubble beside the measured ones, the error, and where the remaining gap lies.
With ``--schedule``, ``--microbatches``, ``--chunks`` or ``--pp`` it asks what-if: the same
model, machine and microbatch size under another configuration. The calibration is fitted
on first use and kept beside the run (``calibration.json``); the run's own files are never
changed.

    pplab predict data/runs/1f1b-p2m8
    pplab predict data/runs/1f1b-p2m8 --schedule zb-h1 --microbatches 16
    pplab predict 1f1b-p4m8 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pplab.cli.common import count


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help="predict a recorded run's step from its own calibration, or what-if",
        description="Replay a recorded run on the costs fitted from it (predicted beside "
                    "measured, with the error), or predict another schedule, microbatch count, "
                    "chunk count or depth on the same costs.")
    parser.add_argument("run", metavar="RUN",
                        help="a run directory, or the name of a bundled run (pplab lab lists "
                             "them)")
    parser.add_argument("--schedule", metavar="NAME", help="another schedule family (what-if)")
    parser.add_argument("--microbatches", type=count, metavar="M",
                        help="microbatches per step (what-if; each keeps the run's size)")
    parser.add_argument("--chunks", type=count, metavar="V", help="model chunks per rank")
    parser.add_argument("--pp", type=count, metavar="P", dest="pp_size",
                        help="pipeline depth: ranks of one pipeline")
    parser.add_argument("--stages", type=count, metavar="S",
                        help="model stages, P x V (another way to give the depth)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run)
    return parser


def find_run(name: str):
    """The run at ``name``, or the bundled run of that name; ValueError with what exists."""
    from pplab.runs.resources import bundled_runs_dir
    from pplab.runs.run_dirs import load_run

    path = Path(name)
    if path.is_dir():
        return load_run(path)
    bundled = bundled_runs_dir() / name
    if not path.is_absolute() and bundled.is_dir():
        return load_run(bundled)
    names = sorted(p.name for p in bundled_runs_dir().iterdir() if p.is_dir()) \
        if bundled_runs_dir().is_dir() else []
    hint = f" nor a bundled run ({', '.join(names)})" if names else ""
    raise ValueError(f"{name} is not a run directory{hint}")


def run(args: argparse.Namespace) -> int:
    from pplab.calibration import calibration_for, gap_breakdown, what_if
    from pplab.calibration.breakdown import median_step, term_breakdown
    from pplab.runs.summary import summarize
    from pplab.schedules import SCHEDULES, depth_from_flags

    recorded = find_run(args.run)
    if args.schedule is not None and args.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {args.schedule!r}; choose one of "
                         f"{', '.join(SCHEDULES)}")
    summary = summarize(recorded)
    depth = depth_from_flags(args.schedule or summary.schedule, args.pp_size, args.stages,
                             args.chunks)
    calibration = calibration_for(recorded)
    prediction = what_if(recorded, calibration, schedule=args.schedule,
                         microbatches=args.microbatches, chunks=args.chunks, pp_size=depth)
    target = prediction.schedule
    label = f"{target.name} p={target.pp_size} m={target.microbatches_per_step}" + \
        (f" v={target.num_chunks}" if target.num_chunks > 1 else "")
    if args.json:
        print(json.dumps(_as_json(recorded, summary, calibration, prediction, label), indent=2,
                         allow_nan=False))
        return 0
    where = f"{summary.label} ({recorded.path})"
    print(f"replay of {where}" if prediction.replay
          else f"what-if {label} on the costs of {where}")
    measured = calibration.measured
    if prediction.replay:
        print(f"  step time  predicted {1e3 * prediction.step_time:9.2f} ms   measured "
              f"{1e3 * measured.step_time:9.2f} ms   error {100 * prediction.error:+.1f} %")
    else:
        print(f"  step time  predicted {1e3 * prediction.step_time:9.2f} ms   (the run measured "
              f"{1e3 * measured.step_time:.2f} ms for its own {summary.schedule})")
    print(f"             {_interval_text(prediction, calibration)}")
    work = None if prediction.replay else _work(recorded, prediction, measured.step_time)
    if work is not None:
        print(f"  unequal work: {work}")
    print(f"  bubble     predicted {100 * prediction.bubble:9.2f} %" + (
        f"    measured {100 * measured.bubble:9.2f} %" if prediction.replay else ""))
    print(f"  median of steps {_steps(measured.steps)}; step = first forward to last "
          f"optimizer step; bubble = idle rank-time / (ranks x step)")
    if prediction.shared:
        sharing = calibration.contention
        print(f"  ranks share {sharing.slots} {sharing.device} slots: predicted with processor "
              f"sharing ({sharing.effective_slots or sharing.slots:g} effective)")
    for note in (calibration.split_backward_rule if not prediction.replay else "",
                 *calibration.notes):
        if note:
            print(f"  note: {note}")
    if prediction.replay:
        # One real step is cut into parts, not the median above: with an even number of
        # steps no step lasts exactly the median, so its measured time is said apart.
        step = median_step(recorded, calibration)
        table = gap_breakdown(recorded, calibration, prediction, step=step)
        print(f"  where the time goes in step {step}, the measured step at the median (its own "
              f"measured time in the last row), per rank (ms): measured, predicted, gap")
        for row in table.itertuples(index=False):
            print(f"    {row[0]:<24} {1e3 * row[1]:9.2f} {1e3 * row[2]:9.2f} {1e3 * row[3]:+9.2f}")
    terms = term_breakdown(calibration, prediction, recorded)
    print("  what the model charges, per rank (ms): " + ("measured, predicted; "
                                                         if prediction.replay else "")
          + "and what measured it")
    for row in terms.itertuples(index=False):
        figures = (f"{1e3 * row[1]:9.2f} " if prediction.replay else "") + f"{1e3 * row[2]:9.2f}"
        print(f"    {row[0]:<24} {figures}   {row[3]}")
    return 0


def _interval_text(prediction, calibration) -> str:
    """The prediction's interval, and for a replay how many of the run's steps it holds."""
    from pplab.calibration.interval import MODEL_ERROR, kind_of

    bar = prediction.interval
    error = MODEL_ERROR[kind_of(prediction.replay, prediction.shared)]
    text = f"{bar.describe()} (the run's spread, and the model's error of {100 * error:.1f} %)"
    times = calibration.measured.times
    if prediction.replay and times:
        inside = sum(bar.holds(t) for t in times)
        text += (f"; its steps took {1e3 * min(times):.2f} to {1e3 * max(times):.2f} ms, "
                 f"{inside} of {len(times)} inside")
    return text


def _work(recorded, prediction, measured_step: float) -> str | None:
    """How a what-if's step differs in work from the run's (``measured_step`` seconds), in
    words; None when both do the same work (another schedule, depth or chunking of the
    same batch)."""
    from pplab.calibration.run_prediction import schedule_of

    own = schedule_of(recorded).microbatches_per_step
    asked = prediction.schedule.microbatches_per_step
    if asked == own:
        return None
    return (f"{asked} microbatches per step against the run's {own} (each of the run's size), "
            f"{asked / own:.3g}x the samples;\n                per microbatch predicted "
            f"{1e3 * prediction.step_time / asked:.2f} ms, the run measured "
            f"{1e3 * measured_step / own:.2f} ms")


def _steps(steps: tuple[int, ...]) -> str:
    return f"{steps[0]}..{steps[-1]}" if len(steps) > 1 else str(steps[0])


def _as_json(recorded, summary, calibration, prediction, label: str) -> dict:
    from pplab.calibration.breakdown import term_breakdown
    from pplab.calibration.interval import MODEL_ERROR, kind_of
    from pplab.calibration.run_prediction import schedule_of

    measured = calibration.measured
    bar = prediction.interval
    terms = term_breakdown(calibration, prediction, recorded)
    return {
        "run": str(recorded.path), "run_label": summary.label, "replay": prediction.replay,
        "schedule": {"label": label, "name": prediction.schedule.name,
                     "pp_size": prediction.schedule.pp_size,
                     "num_microbatches": prediction.schedule.microbatches_per_step,
                     "num_chunks": prediction.schedule.num_chunks},
        "predicted": {"step_time_s": prediction.step_time, "bubble": prediction.bubble},
        # where the measured steps should fall: the draws' spread and the model's error
        "interval": {"level": bar.level, "low_s": bar.low, "high_s": bar.high,
                     "model_error": MODEL_ERROR[kind_of(prediction.replay, prediction.shared)]},
        # a what-if of more or fewer microbatches than the run trained does other work
        "work_ratio": prediction.schedule.microbatches_per_step / schedule_of(
            recorded).microbatches_per_step,
        # the run's own steps: for a replay, what the prediction is judged by
        "measured": {"step_time_s": measured.step_time, "bubble": measured.bubble,
                     "steps": list(measured.steps), "step_times_s": list(measured.times),
                     "schedule": summary.schedule},
        "terms": [{"term": row[0], "predicted_s": row[2],
                   "measured_s": row[1] if prediction.replay else None, "measured_as": row[3]}
                  for row in terms.itertuples(index=False)],
        "error": prediction.error, "shared": prediction.shared,
        "notes": [n for n in (calibration.split_backward_rule, *calibration.notes) if n],
    }
