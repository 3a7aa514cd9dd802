"""``pplab search``: the order with the least bubble that a cap on activation memory allows.

What it teaches: the hand-made schedules are a few points in a vast space of orders. Given the
depth P, the microbatches M, the costs and a cap C on the microbatches a stage may hold at once,
``pplab.sim.search.search_schedule`` plays greedy policies and the hand-made families
forward on the cost model and keeps the fastest order under the cap. The command prints it the
way ``pplab simulate`` prints a family (its Gantt chart and metrics, predicted) and beside it
1F1B with its warm-up cut to the same cap, the baseline the search never loses to.

    pplab search --pp 4 --microbatches 8 --max-in-flight 4
    pplab search --pp 4 --microbatches 8 --max-in-flight 2 --cost f=1,b=2,i=1,w=1,comm=0.2
    python -m pplab search --pp 4 --microbatches 8 --max-in-flight 3 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pplab.charts.text_gantt import gantt_text
from pplab.cli.common import simulation_summary, whole_number


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "search", help="search for the order with the least bubble under a memory cap",
        description="Search the orders of a P-rank pipeline for the least bubble with at "
                    "most C microbatches' activations held per stage, and compare it with "
                    "1F1B under the same cap (all predicted by the simulator).")
    parser.add_argument("--pp", type=whole_number, metavar="P", dest="pp_size", required=True,
                        help="pipeline depth: ranks of one pipeline (one stage each)")
    parser.add_argument("--microbatches", type=whole_number, metavar="M", required=True,
                        help="microbatches per training step")
    parser.add_argument("--max-in-flight", type=whole_number, metavar="C",
                        help="most microbatches whose activations a stage may hold at once "
                             "(default P, 1F1B's memory)")
    parser.add_argument("--cost", default="", metavar="SPEC",
                        help="cost model, e.g. f=1,b=2,i=1,w=1,comm=0 (as pplab simulate)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--save-csv", metavar="FILE", type=Path,
                        help="also write the order found as CSV (pplab simulate --csv FILE "
                             "runs it again, pplab train --csv FILE trains it)")
    parser.set_defaults(func=run)
    return parser


def search(pp_size: int, num_microbatches: int, cost, max_in_flight: int | None):
    """(searched, baseline): each a (schedule, events, summary) of the same cap and costs."""
    from pplab.sim.search import memory_capped_1f1b, search_schedule
    from pplab.sim.simulator import simulate

    found = search_schedule(pp_size, num_microbatches, cost, max_in_flight)
    cap = found.params["max_in_flight"]
    baseline = memory_capped_1f1b(pp_size, num_microbatches, cap)
    out = []
    for schedule in (found, baseline):
        events = simulate(schedule, cost)
        out.append((schedule, events, simulation_summary(schedule, cost, events)))
    return out[0], out[1]


def _lines(schedule, events, summary) -> list[str]:
    peaks = " ".join(f"{s}:{n}" for s, n in summary["peak_activations"].items())
    lines = [gantt_text(events, ranks=range(schedule.pp_size))]
    lines.append(f"  makespan         {summary['makespan']:.4g} cost units (simulated)")
    lines.append(f"  bubble fraction  {summary['bubble_fraction']:.2%} (idle / (ranks x "
                 f"makespan))")
    for rank, part in summary["per_rank"].items():
        lines.append(f"  rank {rank:>2}          busy {part['busy']:.4g}, idle "
                     f"{part['idle']:.4g} cost units")
    lines.append(f"  peak activations {peaks} (microbatches held, per stage)")
    return lines


def run(args: argparse.Namespace) -> int:
    from pplab.schedules import write_csv
    from pplab.sim.simulator import CostModel

    cost = CostModel.parse(args.cost)
    if args.save_csv is not None:  # refused in the first second, not after the search
        from pplab.runs.output_paths import check_writable

        check_writable(args.save_csv, "--save-csv")
    (found, events, summary), (baseline, base_events, base_summary) = search(
        args.pp_size, args.microbatches, cost, args.max_in_flight)
    params = found.params
    if args.save_csv is not None:
        write_csv(found, args.save_csv)
    saved = base_summary["makespan"] - summary["makespan"]
    if args.json:
        summary["search"] = {key: params[key] for key in
                             ("max_in_flight", "found_by", "peak_in_flight")}
        summary["baseline"] = base_summary
        summary["saved_makespan"] = saved
        from pplab.runs.run_dirs import strict_json_value

        print(json.dumps(strict_json_value(summary), sort_keys=True, allow_nan=False))
        return 0
    print(f"searched: {found.pp_size} ranks, {found.microbatches_per_step} microbatches, at most "
          f"{params['max_in_flight']} microbatches held per stage (simulated)")
    print(f"found by: {params['found_by']}; it holds at most {params['peak_in_flight']}")
    print("\n".join(_lines(found, events, summary)))
    print(f"1f1b under the same cap (warm-up cut to {params['max_in_flight']}):")
    print("\n".join(_lines(baseline, base_events, base_summary)))
    share = saved / base_summary["makespan"] if base_summary["makespan"] else 0.0
    print(f"the search saves {saved:.4g} cost units ({share:.1%}) of 1f1b's step under the same "
          f"cap; bubble {summary['bubble_fraction']:.2%} vs {base_summary['bubble_fraction']:.2%}"
          f" (predicted)")
    if args.save_csv is not None:
        print(f"schedule csv     {args.save_csv} (pplab simulate --csv {args.save_csv} runs it "
              f"again)")
    return 0
