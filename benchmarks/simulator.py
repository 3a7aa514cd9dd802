"""How simulation time grows with the size of a schedule (p x m x v actions).

The simulator is event-driven: each action is placed once, and a rank waiting for data
parks on the one fact it misses, so the work is linear in the number of actions. This
prints, side by side in one run, the time to simulate (and to compute the metrics) for
schedules from a few hundred to 65 thousand actions, and the time per action, which should
stay roughly flat if the growth is linear.

    python benchmarks/simulator.py
    python benchmarks/simulator.py --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time

from pplab.schedules import build
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import metrics

CASES = [  # (schedule, p, m, v)
    ("1f1b", 4, 16, 1),
    ("1f1b", 8, 32, 1),
    ("interleaved-1f1b", 8, 32, 2),
    ("1f1b", 16, 128, 1),
    ("interleaved-1f1b", 16, 128, 2),
    ("1f1b", 32, 256, 1),
    ("interleaved-1f1b", 32, 256, 2),
]


def best_of(repeat: int, call) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--cost", default="f=1,b=2,comm=0.1",
                        help="cost model (with comm, so send events are made too)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    try:
        cost = CostModel.parse(args.cost)
    except ValueError as error:
        parser.error(str(error))

    print(f"{'schedule':<18}{'p':>4}{'m':>5}{'v':>3}{'actions':>9}{'events':>8}"
          f"{'simulate s':>12}{'us/action':>11}{'x first':>9}{'metrics s':>11}")
    first = None
    for name, p, m, v in CASES:
        schedule = build(name, p, m, v)
        actions = sum(len(a) for a in schedule.actions.values())
        events = simulate(schedule, cost)
        seconds = best_of(args.repeat, lambda s=schedule: simulate(s, cost))
        metric_seconds = best_of(args.repeat, lambda e=events: metrics(e))
        per_action = seconds / actions * 1e6
        first = first or per_action
        print(f"{name:<18}{p:>4}{m:>5}{v:>3}{actions:>9}{len(events):>8}"
              f"{seconds:>12.4f}{per_action:>11.2f}{per_action / first:>9.2f}"
              f"{metric_seconds:>11.4f}")
    print("x first: time per action relative to the smallest case (flat means linear growth)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
