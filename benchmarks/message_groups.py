"""Pipeline messages in one gloo group or in a group per direction, trained side by side.

What it teaches: two ranks that send to each other at the same moment meet on one gloo
connection, and on a machine with no core to spare both can stay inside ``isend`` for
milliseconds; a schedule whose ranks exchange messages in lockstep (1F1B's steady state,
interleaved 1F1B) pays that on its critical path, GPipe (all forwards, then all backwards)
almost never. ``pplab.engine.comms`` therefore sends to higher ranks and to lower ranks in
two groups of their own. This trains each schedule both ways (``--message-groups one`` and
``per-direction``) at ``pplab train``'s default sizes (``--sizes benchmark``: the other
benchmarks' larger messages) on 2 ranks (CPU, gloo, one thread per rank), all of them in one
set of processes taking turns step by step (a busy neighbour's load falls on every
configuration alike), and prints per schedule the median step (first
forward to last optimizer step, after two warm-up steps), the ratio of the two, and the
sends that started within ``--window`` microseconds of one from their peer (crossing
sends): how many per step and their median time inside ``isend``, beside the others'.

    python benchmarks/message_groups.py
    python benchmarks/message_groups.py --steps 60 --microbatches 8
    python benchmarks/message_groups.py --sizes benchmark --microbatches 8 --steps 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
from predict_accuracy import BENCHMARK_SIZES, DEFAULTS, WARM_UP_ROUNDS, Config, measure

SCHEDULES = ("gpipe", "1f1b", "zb-h1", "interleaved-1f1b")
SIZES = {"default": DEFAULTS, "benchmark": BENCHMARK_SIZES}  # pplab train's, the benchmarks'
GROUPS = ("one", "per-direction")


def configs(schedules: tuple[str, ...], microbatches: int) -> list[Config]:
    """Each schedule on 2 ranks, with one group and with a group per direction."""
    return [Config(f"{schedule} {groups}", schedule, 2, microbatches,
                   2 if schedule == "interleaved-1f1b" else None, message_groups=groups)
            for schedule in schedules for groups in GROUPS]


def crossing_sends(events, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Seconds inside each send that started within ``window`` of a send from its peer to
    it, and inside each other send (steps after the warm-up)."""
    sends = events[(events["kind"] == "send") & (events["step"] >= WARM_UP_ROUNDS)]
    crossing, other = [], []
    starts = {rank: frame["start"].to_numpy() for rank, frame in sends.groupby("rank")}
    for row in sends.itertuples(index=False):
        theirs = starts.get(row.peer, np.array([]))
        met = theirs.size and np.min(np.abs(theirs - row.start)) <= window
        (crossing if met else other).append(row.end - row.start)
    return np.array(crossing), np.array(other)


def step_times(events) -> list[float]:
    """Each measured step, first forward to last optimizer step, after the warm-up."""
    from pplab.schedules.actions import COMPUTE_KINDS

    kept = events[events["step"] >= WARM_UP_ROUNDS]
    work = kept[kept["kind"].isin([*COMPUTE_KINDS, "optim"])]
    return [float(part["end"].max() - part["start"].min()) for _, part in work.groupby("step")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="measured steps per configuration")
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--sizes", choices=tuple(SIZES), default="default",
                        help="pplab train's sizes (default) or the other benchmarks' "
                             "(8 x 64 tokens per microbatch, d_model 128)")
    parser.add_argument("--schedules", default=",".join(SCHEDULES),
                        help=f"comma-separated, of {', '.join(SCHEDULES)} (default all)")
    parser.add_argument("--window", type=float, default=30.0,
                        help="microseconds between two sends that cross (default 30)")
    args = parser.parse_args(argv)
    schedules = tuple(dict.fromkeys(args.schedules.split(",")))
    if not 1 <= args.steps <= 1000 or not 1 <= args.microbatches <= 64 or args.window <= 0 \
            or not set(schedules) <= set(SCHEDULES):
        parser.error(f"--steps 1-1000, --microbatches 1-64, --window > 0, --schedules of "
                     f"{', '.join(SCHEDULES)}")

    from pplab.engine.supervisor import RankFailed

    load = os.getloadavg()
    sizes = SIZES[args.sizes]
    print(f"2 ranks, CPU, gloo, {sizes['rows']} x {sizes['seq_len']} tokens per microbatch, "
          f"d_model {sizes['d_model']}, {sizes['layers']} layers, m={args.microbatches}; "
          f"{args.steps} measured steps per configuration, taking turns; load average before "
          f"{load[0]:.2f} (1 min) on {os.cpu_count()} cores")
    try:
        runs = measure(configs(schedules, args.microbatches), 2,
                       {**sizes, "steps": args.steps})
    except RankFailed as error:
        print(f"message_groups: {error}", file=sys.stderr)
        return 1
    window = args.window * 1e-6
    found = {}
    for config in configs(schedules, args.microbatches):
        events = runs[config.label].events.assign(
            kind=lambda frame: frame["kind"].astype(str))
        found[config.schedule, config.message_groups] = (
            statistics.median(step_times(events)), *crossing_sends(events, window))
    print(f"\n{'schedule':<18}{'step, one group':>17}{'per direction':>15}{'ratio':>8}   "
          f"crossing sends per step, median ms in isend (other sends' median): one group | "
          f"per direction")
    for schedule in schedules:
        cells = []
        for groups in GROUPS:
            _, crossing, other = found[schedule, groups]
            inside = f"{1e3 * np.median(crossing):.2f}" if crossing.size else "-"
            cells.append(f"{crossing.size / args.steps:.1f}, {inside} "
                         f"({1e3 * np.median(other):.2f})")
        one, split = found[schedule, "one"][0], found[schedule, "per-direction"][0]
        print(f"{schedule:<18}{1e3 * one:>14.2f} ms{1e3 * split:>12.2f} ms{split / one:>8.2f}"
              f"   {cells[0]} | {cells[1]}")
    load = os.getloadavg()
    print(f"\nload average after {load[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
