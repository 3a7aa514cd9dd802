"""``pplab schedules``, ``pplab simulate`` and ``pplab validate``: the commands that read the
schedule language and the simulator, and never import torch.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8
    pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --save-csv zb-h1.csv
    pplab validate data/schedules/hand-iw-late-w-p2m4.csv
"""

from __future__ import annotations

import json
from pathlib import Path

from pplab.charts.text_gantt import gantt_text
from pplab.cli.common import schedule_from_args, simulation_summary, whole_number
from pplab.timeline import EventKind


def add_parsers(subparsers) -> None:
    listing = subparsers.add_parser("schedules", help="list the registered schedule families")
    listing.set_defaults(func=cmd_schedules)

    sim = subparsers.add_parser(
        "simulate", help="predict a schedule's timeline with the cost model",
        description="Simulate a schedule and print a text Gantt chart and its metrics.")
    source = sim.add_mutually_exclusive_group(required=True)
    source.add_argument("--schedule", metavar="NAME", help="a registered family (pplab schedules)")
    source.add_argument("--csv", metavar="FILE", type=Path, help="simulate a schedule CSV instead")
    sim.add_argument("--pp", type=whole_number, metavar="P", dest="pp_size",
                     help="pipeline depth: ranks of one pipeline")
    sim.add_argument("--stages", type=whole_number, metavar="S",
                     help="model stages, P x V (another way to give the depth)")
    sim.add_argument("--microbatches", type=whole_number, metavar="M",
                     help="microbatches per training step")
    sim.add_argument("--chunks", type=whole_number, metavar="V",
                     help="model chunks per rank (interleaved schedules)")
    sim.add_argument("--steps", type=whole_number, metavar="S",
                     help="training steps: a synchronous schedule's step S times, an optimizer "
                          "step between (see --optimizer-sync); an asynchronous one's own")
    sim.add_argument("--optimizer-sync", choices=("barrier", "post"),
                     help="how the steps of a synchronous schedule meet at the optimizer: "
                          "barrier (default with --steps: every rank waits for the slowest) "
                          "or post (each rank steps at once and validates during the next "
                          "step's warm-up, Qi et al. 2024, Sec. 4)")
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


def cmd_schedules(args) -> int:
    from pplab.schedules import SCHEDULES

    width = max(len(name) for name in SCHEDULES)
    for name, family in SCHEDULES.items():
        chunks = "" if family.max_chunks == 1 else f" [--chunks >= {family.min_chunks}]"
        print(f"{name.ljust(width)}  {family.summary}{chunks}")
        print(f"{' ' * width}  paper: {family.paper}")
    return 0


def cmd_validate(args) -> int:
    from pplab.schedules import read_csv, validate

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


def cmd_simulate(args) -> int:
    from pplab.runs.run_dirs import save_run, write_chrome_trace
    from pplab.schedules import write_csv
    from pplab.sim import simulator

    cost = simulator.CostModel.parse(args.cost)
    schedule = schedule_from_args(args)
    sync = args.optimizer_sync
    if schedule.is_async and sync is not None:
        raise ValueError(f"--optimizer-sync applies to synchronous schedules; {schedule.name} "
                         f"steps each stage on its own clock")
    if sync is None and args.steps is not None and not schedule.is_async:
        sync = "barrier"
    _check_outputs(args, schedule)
    events = simulator.simulate(schedule, cost, optimizer_sync=sync)
    summary = simulation_summary(schedule, cost, events, sync)
    if args.trace is not None:
        write_chrome_trace(events, args.trace)
    if args.save_csv is not None:
        write_csv(schedule, args.save_csv)
    if args.save is not None:
        meta = simulator.metadata(schedule, cost)
        meta["bytes_per_link"] = _bytes_per_link(events)
        save_run(args.save, events, meta)
    if args.json:
        from pplab.runs.run_dirs import strict_json_value

        print(json.dumps(strict_json_value(summary), sort_keys=True, allow_nan=False))
        return 0
    print(f"{schedule.name}: {schedule.pp_size} ranks, {schedule.num_stages} stages, "
          f"{schedule.microbatches_per_step} microbatches per step, {schedule.num_steps} step(s)"
          f" (simulated)")
    print(gantt_text(events, ranks=range(schedule.pp_size)))
    print(f"makespan         {summary['makespan']:.4g} cost units (simulated)")
    whole = f", whole run of {schedule.num_steps} steps" if schedule.num_steps > 1 else ""
    bubble = (f"bubble fraction  {summary['bubble_fraction']:.2%} "
              f"(idle / (ranks x makespan){whole})")
    if sync is None:
        print(bubble + _closed_form_text(summary["closed_form"]))
    else:
        print(bubble)
        _print_steps(summary, sync)
    for rank, part in summary["per_rank"].items():
        print(f"rank {rank:>2}          busy {part['busy']:.4g}, comm {part['comm']:.4g}, "
              f"idle {part['idle']:.4g} cost units")
    peaks = " ".join(f"{s}:{n}" for s, n in summary["peak_activations"].items())
    print(f"peak activations {peaks} (microbatches held, per stage)")
    own = " of its own microbatches (steps overlap: not the run's bubble)" \
        if schedule.is_async else ""
    # A synchronous run's steps are summed up above (first step, steady state): one step's
    # own span reaches across ranks whose steps overlap, and says little alone.
    for step in summary.get("per_step", []) if sync is None else []:
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


def _closed_form_text(closed: dict) -> str:
    if closed["bubble_fraction"] is not None:
        return f"; closed form {closed['formula']} = {closed['bubble_fraction']:.2%}"
    return f"; closed form n/a: {closed['note']}" if closed["note"] else ""


def _print_steps(summary: dict, sync: str) -> None:
    """The first step apart, then the steady state per step, with the form that fits it."""
    first, steady, closed = summary["first_step"], summary["steady_state"], summary["closed_form"]
    print(f"first step       {first['time']:.4g} cost units, bubble "
          f"{first['bubble_fraction']:.2%} (nothing before it to overlap)")
    if steady is None:
        return
    print(f"steady state     {steady['step_time']:.4g} cost units per step, bubble "
          f"{steady['bubble_fraction']:.2%} per step (optimizer sync: {sync})"
          + _closed_form_text(closed))
    if closed["regime"]:
        print(f"closed form's regime: {closed['regime']}")
    if closed["extension"]:
        print(f"pplab's own extension of the paper's form: {closed['extension']}")


# About what each output takes per action (a few event rows each): refuses a full disk first.
_OUTPUT_BYTES_PER_ACTION = {"--save": 200, "--trace": 800, "--save-csv": 8}


def _check_outputs(args, schedule) -> None:
    """Refuse, before simulating, an output that cannot be written (see pplab.runs.output_paths)."""
    from pplab.runs.output_paths import check_writable

    actions = sum(len(order) for order in schedule.actions.values())
    if args.save is not None and (args.save.exists() or args.save.is_symlink()):
        raise ValueError(f"{args.save} already exists; choose a new run directory")
    for flag, path in (("--save", args.save), ("--trace", args.trace),
                       ("--save-csv", args.save_csv)):
        if path is not None:
            check_writable(path, flag, need_bytes=actions * _OUTPUT_BYTES_PER_ACTION[flag],
                           folder=flag == "--save")


def _bytes_per_link(events) -> dict[str, int]:
    sends = events[events["kind"] == EventKind.SEND]
    totals = sends.groupby(["rank", "peer"])["bytes"].sum()
    return {f"{src}->{dst}": int(total) for (src, dst), total in totals.items()}
