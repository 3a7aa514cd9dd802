"""The ``pplab`` command: schedules, simulate, validate, search, train, compare, plan,
predict, exercise and lab.

The CLI is thin: it parses, calls the library and prints. A user mistake ends with one line
``pplab: error: ...`` and exit status 2, before any work: sizes are bounded by
``pplab.limits`` and every output file is checked writable first; ``validate`` exits 1 for
a schedule that cannot run. ``--json`` prints strict JSON (null, never NaN). Whatever else
goes wrong is still one line (``pplab: internal error: ...``, exit 1; ``PPLAB_DEBUG=1``
shows the traceback), never a traceback by default.
``search``, ``train``, ``compare``, ``plan``, ``predict``, ``exercise`` and ``lab`` keep their
options beside their code (``pplab.search_command``, ``pplab.engine.train_command``, ...),
whose modules import no torch until they run: ``schedules``, ``simulate`` and ``validate``
never import it.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8
    pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --save-csv zb-h1.csv
    python -m pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

GANTT_COLUMNS = 100


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one short line instead of the full usage
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _count(text: str) -> int:
    """A whole number of at least 1, for options where 0 can only be a slip."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pplab", description="Learn pipeline parallelism by running it.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True

    listing = subparsers.add_parser("schedules", help="list the registered schedule families")
    listing.set_defaults(func=cmd_schedules)

    sim = subparsers.add_parser(
        "simulate", help="predict a schedule's timeline with the cost model",
        description="Simulate a schedule and print a text Gantt chart and its metrics.")
    source = sim.add_mutually_exclusive_group(required=True)
    source.add_argument("--schedule", metavar="NAME", help="a registered family (pplab schedules)")
    source.add_argument("--csv", metavar="FILE", type=Path, help="simulate a schedule CSV instead")
    sim.add_argument("--pp", type=_whole_number, metavar="P", dest="pp_size",
                     help="pipeline depth: ranks of one pipeline")
    sim.add_argument("--stages", type=_whole_number, metavar="S",
                     help="model stages, P x V (another way to give the depth)")
    sim.add_argument("--microbatches", type=_whole_number, metavar="M",
                     help="microbatches per training step")
    sim.add_argument("--chunks", type=_whole_number, metavar="V",
                     help="model chunks per rank (interleaved schedules)")
    sim.add_argument("--steps", type=_whole_number, metavar="S",
                     help="training steps (asynchronous schedules: pipedream, pipedream-2bw)")
    sim.add_argument("--cost", default="", metavar="SPEC",
                     help="cost model, e.g. f=1,b=2,i=1,w=1,comm=0 (also lat=, bw=, bytes=, "
                          "opt=, scale=1:1.5:1)")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead")
    sim.add_argument("--trace", metavar="FILE", type=Path,
                     help="also write a Chrome trace (open at ui.perfetto.dev)")
    sim.add_argument("--save", metavar="DIR", type=Path,
                     help="also save a run directory (events.parquet + meta.json)")
    sim.add_argument("--save-csv", metavar="FILE", type=Path,
                     help="also write the schedule as CSV, a start for your own "
                          "(pplab simulate --csv FILE runs it again)")
    sim.set_defaults(func=cmd_simulate)

    check = subparsers.add_parser("validate", help="check that a schedule CSV can run")
    check.add_argument("file", type=Path, metavar="FILE.csv")
    check.set_defaults(func=cmd_validate)

    # Imported here, not at the top: `pplab --help` stays quick. None of them imports torch
    # before its command runs.
    from .demo_command import add_parser as add_demo
    from .engine.compare_command import add_parser as add_compare
    from .engine.train_command import add_parser as add_train
    from .exercise_command import add_parser as add_exercise
    from .lab_command import add_parser as add_lab
    from .plan_command import add_parser as add_plan
    from .predict_command import add_parser as add_predict
    from .search_command import add_parser as add_search

    for add in (add_search, add_train, add_compare, add_plan, add_predict, add_exercise,
                add_lab, add_demo):
        add(subparsers)
    return parser


def cmd_schedules(args) -> int:
    from .schedules import SCHEDULES

    width = max(len(name) for name in SCHEDULES)
    for name, family in SCHEDULES.items():
        chunks = "" if family.max_chunks == 1 else f" [--chunks >= {family.min_chunks}]"
        print(f"{name.ljust(width)}  {family.summary}{chunks}")
        print(f"{' ' * width}  paper: {family.paper}")
    return 0


def cmd_validate(args) -> int:
    from .schedules import read_csv, validate

    if not args.file.is_file():
        raise ValueError(f"{args.file} is not a file")
    try:
        schedule = validate(read_csv(args.file))
    except ValueError as error:
        print(f"{args.file}: invalid: {error}")
        return 1
    print(f"{args.file}: valid: {schedule.pp_size} ranks, {schedule.num_stages} stages, "
          f"{schedule.num_microbatches} microbatches")
    return 0


def _schedule_from_args(args):
    from .schedules import SCHEDULES, build, depth_from_flags, read_csv, validate

    if args.csv is not None:
        for flag in ("pp_size", "stages", "microbatches", "chunks", "steps"):
            if getattr(args, flag) is not None:
                name = "pp" if flag == "pp_size" else flag
                raise ValueError(f"--{name} does not apply to --csv (the CSV fixes the schedule)")
        if not args.csv.is_file():
            raise ValueError(f"{args.csv} is not a file")
        return validate(read_csv(args.csv))
    if args.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {args.schedule!r}; choose one of "
                         f"{', '.join(SCHEDULES)}")
    depth = depth_from_flags(args.schedule, args.pp_size, args.stages, args.chunks)
    if depth is None or args.microbatches is None:
        raise ValueError("--schedule needs --pp P (or --stages P x V) and --microbatches M")
    options = {}
    if args.steps is not None:
        if not SCHEDULES[args.schedule].asynchronous:
            raise ValueError(f"--steps applies to asynchronous schedules; {args.schedule} "
                             f"flushes every step")
        options["num_steps"] = args.steps
    return build(args.schedule, depth, args.microbatches, args.chunks, **options)


def gantt_letters() -> dict[str, str]:
    """The letter of each busy event kind: the action kinds as schedules write them, O for
    the optimizer step."""
    from .schedules import COMPUTE_KINDS
    from .timeline import OPTIM_KIND

    return {**{kind: kind for kind in COMPUTE_KINDS}, OPTIM_KIND: "O"}


def gantt_text(events, ranks=None, width: int = GANTT_COLUMNS) -> str:
    """One row per rank, one character per time slot: F, B, I, W, O (optimizer), '.' idle.

    ``ranks`` are the run's ranks (default: those with events), so a rank with nothing to do
    still gets its idle row. The slot is sized so a unit of work spans a few characters when
    the run is short and the whole run fits ~``width`` columns when it is long; the
    microbatch is written where it fits.
    """
    letters = gantt_letters()
    work = events[events["kind"].isin(tuple(letters))]
    if work.empty:
        return "(no compute events)"
    origin = float(events["start"].min())
    makespan = float(events["end"].max()) - origin
    if makespan <= 0:
        return "(every action takes no time: nothing to draw)"
    shortest = float((work["end"] - work["start"])[work["end"] > work["start"]].min())
    slot = makespan / width
    for per_unit in (3, 2, 1):
        if not math.isnan(shortest) and makespan / (shortest / per_unit) <= width:
            slot = shortest / per_unit
            break
    columns = max(1, math.ceil(makespan / slot - 1e-9))
    lines = []
    shown = events["rank"].unique() if ranks is None else ranks
    for rank in sorted(int(r) for r in shown):
        row = ["."] * columns
        mine = work[work["rank"] == rank]
        for kind, mb, start, end in zip(mine["kind"], mine["microbatch"], mine["start"],
                                        mine["end"], strict=True):
            first = round((start - origin) / slot)
            last = max(first + 1, round((end - origin) / slot))
            last = min(last, columns)
            label = letters[kind] + (str(mb) if mb >= 0 else "")
            cells = last - first
            text = label.ljust(cells) if len(label) <= cells else letters[kind] * cells
            row[first:last] = list(text[:cells])
        lines.append(f"rank {rank:>2} |{''.join(row)}|")
    lines.append(f"          one character = {slot:g} cost units; '.' idle, O optimizer")
    return "\n".join(lines)


def _summary(schedule, cost, events) -> dict:
    from .formulas import closed_form_for
    from .simulator import TIME_UNIT, schedule_summary
    from .timeline import metrics

    result = metrics(events, ranks=range(schedule.pp_size))
    closed = closed_form_for(schedule, cost)
    result["per_rank"] = {str(r): v for r, v in result["per_rank"].items()}
    result["peak_activations"] = {str(s): v for s, v in result["peak_activations"].items()}
    result.update(
        time_unit=TIME_UNIT,
        schedule=schedule_summary(schedule),
        cost=cost.to_dict(),
        closed_form={"formula": closed.form.text if closed.form else "",
                     "bubble_fraction": closed.value, "ratio_to_ideal": closed.ratio_to_ideal,
                     "note": closed.note},
    )
    return result


def cmd_simulate(args) -> int:
    from . import simulator
    from .schedules import write_csv
    from .timeline import save_run, write_chrome_trace

    cost = simulator.CostModel.parse(args.cost)
    schedule = _schedule_from_args(args)
    _check_outputs(args, schedule)
    events = simulator.simulate(schedule, cost)
    summary = _summary(schedule, cost, events)
    if args.trace is not None:
        write_chrome_trace(events, args.trace)
    if args.save_csv is not None:
        write_csv(schedule, args.save_csv)
    if args.save is not None:
        meta = simulator.metadata(schedule, cost)
        meta["bytes_per_link"] = _bytes_per_link(events)
        save_run(args.save, events, meta)
    if args.json:
        from .run_dirs import strict_json_value

        print(json.dumps(strict_json_value(summary), sort_keys=True, allow_nan=False))
        return 0
    print(f"{schedule.name}: {schedule.pp_size} ranks, {schedule.num_stages} stages, "
          f"{schedule.microbatches_per_step} microbatches per step, {schedule.num_steps} step(s)"
          f" (simulated)")
    print(gantt_text(events, ranks=range(schedule.pp_size)))
    print(f"makespan         {summary['makespan']:.4g} cost units (simulated)")
    closed = summary["closed_form"]
    whole = f", whole run of {schedule.num_steps} steps" if schedule.is_async else ""
    bubble = (f"bubble fraction  {summary['bubble_fraction']:.2%} "
              f"(idle / (ranks x makespan){whole})")
    if closed["bubble_fraction"] is not None:
        bubble += f"; closed form {closed['formula']} = {closed['bubble_fraction']:.2%}"
    elif closed["note"]:
        bubble += f"; closed form n/a: {closed['note']}"
    print(bubble)
    for rank, part in summary["per_rank"].items():
        print(f"rank {rank:>2}          busy {part['busy']:.4g}, comm {part['comm']:.4g}, "
              f"idle {part['idle']:.4g} cost units")
    peaks = " ".join(f"{s}:{n}" for s, n in summary["peak_activations"].items())
    print(f"peak activations {peaks} (microbatches held, per stage)")
    own = " of its own microbatches (steps overlap: not the run's bubble)" \
        if schedule.is_async else ""
    for step in summary.get("per_step", []):
        print(f"step {step['step']:>2}          makespan {step['makespan']:.4g} cost units, "
              f"bubble {step['bubble_fraction']:.2%}{own}")
    if args.trace is not None:
        print(f"trace            {args.trace} (open at https://ui.perfetto.dev)")
    if args.save_csv is not None:
        print(f"schedule csv     {args.save_csv} (pplab simulate --csv {args.save_csv} runs it "
              f"again)")
    if args.save is not None:
        print(f"run saved        {args.save}")
    return 0


# About what each output takes per action (a few event rows each): refuses a full disk first.
_OUTPUT_BYTES_PER_ACTION = {"--save": 200, "--trace": 800, "--save-csv": 8}


def _check_outputs(args, schedule) -> None:
    """Refuse, before simulating, an output that cannot be written (see pplab.output_paths)."""
    from .output_paths import check_writable

    actions = sum(len(order) for order in schedule.actions.values())
    if args.save is not None and (args.save.exists() or args.save.is_symlink()):
        raise ValueError(f"{args.save} already exists; choose a new run directory")
    for flag, path in (("--save", args.save), ("--trace", args.trace),
                       ("--save-csv", args.save_csv)):
        if path is not None:
            check_writable(path, flag, need_bytes=actions * _OUTPUT_BYTES_PER_ACTION[flag],
                           folder=flag == "--save")


def _bytes_per_link(events) -> dict[str, int]:
    sends = events[events["kind"] == "send"]
    totals = sends.groupby(["rank", "peer"])["bytes"].sum()
    return {f"{src}->{dst}": int(total) for (src, dst), total in totals.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as error:
        reason = getattr(error, "reason", None) or str(error)
        lines = reason.strip().splitlines() or [type(error).__name__]
        print(f"pplab: error: {lines[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # Python flushes stdout at exit
        return 1
    except OSError as error:  # e.g. --trace or --save into a folder that cannot be written
        where = f"{error.filename}: " if error.filename else ""
        print(f"pplab: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pplab: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, with the way to see more
        if os.environ.get("PPLAB_DEBUG"):
            raise
        text = str(error).strip().splitlines()
        print(f"pplab: internal error: {type(error).__name__}: {text[0] if text else ''} "
              f"(a bug in pplab; PPLAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
