"""What several commands share: whole-number options, the schedule a command line names, and
the summary of a simulated schedule that ``simulate`` and ``search`` print.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8 --json
"""

from __future__ import annotations

import argparse


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def count(text: str) -> int:
    """A whole number of at least 1, for options where 0 can only be a slip."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value


def schedule_from_args(args):
    """The schedule the command line names; ``--steps`` K of a synchronous one are K copies
    of its step, one after the other (``pplab.schedules.steps.repeat_steps``)."""
    from pplab.schedules import SCHEDULES, build, depth_from_flags, read_csv, validate
    from pplab.schedules.steps import repeat_steps

    if args.csv is not None:
        for flag in ("pp_size", "stages", "microbatches", "chunks"):
            if getattr(args, flag) is not None:
                name = "pp" if flag == "pp_size" else flag
                raise ValueError(f"--{name} does not apply to --csv (the CSV fixes the schedule)")
        if not args.csv.is_file():
            raise ValueError(f"{args.csv} is not a file")
        schedule = validate(read_csv(args.csv))
        return schedule if args.steps is None else repeat_steps(schedule, args.steps)
    if args.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {args.schedule!r}; choose one of "
                         f"{', '.join(SCHEDULES)}")
    depth = depth_from_flags(args.schedule, args.pp_size, args.stages, args.chunks)
    if depth is None or args.microbatches is None:
        raise ValueError("--schedule needs --pp P (or --stages P x V) and --microbatches M")
    if SCHEDULES[args.schedule].asynchronous:
        options = {} if args.steps is None else {"num_steps": args.steps}
        return build(args.schedule, depth, args.microbatches, args.chunks, **options)
    schedule = build(args.schedule, depth, args.microbatches, args.chunks)
    return schedule if args.steps is None else repeat_steps(schedule, args.steps)


def simulation_summary(schedule, cost, events, optimizer_sync: str | None = None) -> dict:
    """Metrics, closed form and sizes of a simulated schedule; with ``optimizer_sync`` (a
    synchronous schedule's several steps) the first step and the steady state apart too."""
    from pplab.formulas.pipeline import closed_form_for
    from pplab.sim.simulator import TIME_UNIT, schedule_summary
    from pplab.timeline import metrics
    from pplab.timeline.steady_state import steady_state

    result = metrics(events, ranks=range(schedule.pp_size))
    closed = closed_form_for(schedule, cost, optimizer_sync)
    if optimizer_sync is not None:
        result.update(steady_state(events, range(schedule.pp_size)),
                      optimizer_sync=optimizer_sync)
    result["per_rank"] = {str(r): v for r, v in result["per_rank"].items()}
    result["peak_activations"] = {str(s): v for s, v in result["peak_activations"].items()}
    result.update(
        time_unit=TIME_UNIT,
        schedule=schedule_summary(schedule),
        cost=cost.to_dict(),
        closed_form={"formula": closed.form.text if closed.form else "",
                     "bubble_fraction": closed.value, "ratio_to_ideal": closed.ratio_to_ideal,
                     "note": closed.note, "regime": closed.form.regime if closed.form else "",
                     "extension": closed.form.extension if closed.form else ""},
    )
    return result
