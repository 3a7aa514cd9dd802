"""Staleness at equal optimizer updates: synchronous training, PipeDream and PipeDream-2BW.

What it teaches: comparing PipeDream with 1F1B per step mixes two things, its stale weights
and its m times more optimizer steps. Here every schedule makes the same number of updates,
each on the same rows of the same data stream, at a few learning rates, on real ranks
(``pplab.teaching.staleness`` says how each is configured). It prints the final loss of each
schedule
at each rate and the best over the rates; ``--out`` saves every loss curve as the lesson's
data. Two ranks train the nine runs on CPU in about a minute.

    python benchmarks/staleness.py --out data/comparisons/staleness-p2
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pp", type=int, default=2, help="pipeline ranks (default 2)")
    parser.add_argument("--updates", type=int, default=500, help="optimizer updates (500)")
    parser.add_argument("--rows", type=int, default=8, help="rows per update (default 8)")
    parser.add_argument("--lrs", default="0.0003,0.001,0.002", help="learning rates to sweep")
    parser.add_argument("--out", default=None, help="folder to save staleness.json in")
    args = parser.parse_args(argv)
    from pplab.engine.supervisor import RankFailed
    from pplab.teaching.staleness import Study, run_study, save, table_text

    try:
        study = Study(pp=args.pp, updates=args.updates, rows_per_update=args.rows,
                      lrs=tuple(float(x) for x in args.lrs.split(",")))
    except ValueError as error:
        print(f"staleness: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        document = run_study(study)
    except (RankFailed, ValueError) as error:
        print(f"staleness: {error}", file=sys.stderr)
        return 1
    print(table_text(document))
    print(f"({len(study.configs())} runs on {study.pp} ranks in "
          f"{time.perf_counter() - started:.0f} s)")
    if args.out:
        print(f"saved {save(document, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
