"""The measured GPipe bubble beside its closed form, as the microbatches grow.

What it teaches: GPipe's bubble, (p - 1) / (m + p - 1) of every rank's time (Huang et al.,
2019), is not only a formula: train the same model on real processes with m = 1, 2, 4, 8
microbatches and the idle share the timeline measures falls with it. Messages and a shared
CPU add idle time the formula leaves out, so the measured column sits above the closed form;
the fall is what the run shows. Timings belong here, not in the tests, which assert orders.

    python benchmarks/measured_bubble.py --pp 2 --steps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys


def measured_bubble(pp_size: int, microbatches: int, steps: int) -> float:
    """Median per-step bubble fraction of a real GPipe run (step 0 warms up, left out)."""
    from pplab.engine.launch import run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig
    from pplab.timeline import metrics

    # Microbatches of a few ms of compute keep the messages' share of the idle time small.
    config = TrainConfig(schedule="gpipe", pp_size=pp_size, microbatches=microbatches,
                         steps=steps, batch_size=8 * microbatches, d_model=128, heads=4,
                         seq_len=64, layers=max(4, pp_size), out="-")
    events = run_training(check_request(config), None).events  # out="-": nothing saved
    per_step = metrics(events, range(pp_size))["per_step"]
    return statistics.median(s["bubble_fraction"] for s in per_step[1:] or per_step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pp", type=int, default=2, help="pipeline depth (default 2)")
    parser.add_argument("--steps", type=int, default=4, help="steps per run (default 4)")
    parser.add_argument("--microbatches", default="1,2,4,8", help="counts to run, e.g. 1,2,4,8")
    args = parser.parse_args(argv)
    try:
        counts = [int(m) for m in args.microbatches.split(",")]
    except ValueError:
        print(f"measured_bubble: --microbatches must be counts such as 1,2,4,8, got "
              f"{args.microbatches!r}", file=sys.stderr)
        return 2
    if min(counts + [args.pp, args.steps]) < 1:
        print("measured_bubble: every count must be at least 1", file=sys.stderr)
        return 2
    from pplab.engine.supervisor import RankFailed

    p = args.pp
    print(f"gpipe, pp={p}, {args.steps} steps each, CPU; bubble = idle / (ranks x makespan) "
          f"per step, median over steps 1..")
    print(f"{'m':>4} {'measured':>9} {'closed form':>12}")
    for m in counts:
        try:
            measured = measured_bubble(p, m, args.steps)
        except ValueError as error:
            print(f"measured_bubble: {error}", file=sys.stderr)
            return 2
        except RankFailed as error:
            print(f"measured_bubble: {error}", file=sys.stderr)
            return 1
        print(f"{m:>4} {measured:9.3f} {(p - 1) / (m + p - 1):12.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
