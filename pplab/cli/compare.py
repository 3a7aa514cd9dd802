"""``pplab compare``: the same model and batch under several parallel configurations.

What it teaches: why a configuration is fast or slow. Each configuration trains for real
(one process per rank) and the table puts, side by side, the measured step time, bubble
fraction, all-reduce time, bytes moved per step (beside the closed form's value), peak
activation memory and loss. Pipelines show their bubbles; tensor parallelism its
all-reduces; data parallelism its gradient traffic.

    pplab compare gpipe:pp=4,m=8 1f1b:pp=4,m=8 pipedream:pp=4,m=8 tp:tp=4 --steps 5
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

SYNTAX = """\
configurations are written NAME[:KEY=VALUE,...]
  NAME  a schedule (gpipe, 1f1b, interleaved-1f1b, zb-h1, pipedream, pipedream-2bw, naive),
        or tp / dp for no pipeline: one stage split over tp ranks or replicated on dp ranks
  KEY   pp  pipeline ranks (default 2; 1 for tp and dp)
        m   microbatches per step (default pp; 1 for tp and dp)
        v   model chunks per rank (interleaved-1f1b)
        tp  tensor-parallel ranks per stage (default 1; 2 for NAME tp)
        dp  data-parallel replicas (default 1; 2 for NAME dp)

every configuration trains the same model on the same global batch (default: the smallest
multiple of every m x dp that is at least 16 rows). The comparison directory holds one run
directory per configuration, comparison.json and comparison.csv; it appears complete or not
at all.

examples:
  pplab compare gpipe:pp=4,m=8 1f1b:pp=4,m=8 pipedream:pp=4,m=8 tp:tp=4
  pplab compare 1f1b:pp=2,m=4 1f1b:pp=2,m=4,tp=2 tp:tp=2,dp=2 dp:dp=4 --steps 3
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from pplab.cli.train import (
        add_dry_run_argument,
        add_model_arguments,
        add_oversubscribe_argument,
    )

    parser = subparsers.add_parser(
        "compare", help="train one model under several pp/tp/dp configurations and tabulate",
        description="Train the same toy GPT on the same global batch under each configuration "
                    "and print a table: step time, bubble fraction, all-reduce time, bytes "
                    "per step (measured and closed form), peak activation memory, loss.",
        epilog=SYNTAX, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", metavar="CONFIG",
                        help="NAME[:KEY=VALUE,...], e.g. 1f1b:pp=4,m=8 or tp:tp=4")
    parser.add_argument("--steps", type=int, default=5, help="training steps (default 5)")
    parser.add_argument("--layers", type=int,
                        help="transformer blocks (default max(4, largest pp x v))")
    parser.add_argument("--batch-size", type=int, help="global batch, rows (see below)")
    add_model_arguments(parser)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before one stuck configuration is stopped (default 300, "
                             "at most a day)")
    parser.add_argument("--out", metavar="DIR",
                        help="comparison directory (default $PPLAB_RUNS_DIR or runs/, then "
                             "comparisons/<time>, where the app finds it)")
    parser.add_argument("--description", default="",
                        help="one paragraph the app shows above the comparison")
    parser.add_argument("--json", action="store_true",
                        help="print the rows as JSON instead of a table")
    add_oversubscribe_argument(parser)
    add_dry_run_argument(parser)
    parser.set_defaults(func=run)
    return parser


def _fail(message: str, code: int) -> int:
    """One line on stderr and the exit status: 2 for a mistake, 1 for a failed run."""
    print(f"pplab compare: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from pplab.cli.train import machine_warning, strict_json
    from pplab.engine.compare import Shared, check_comparison, run_comparison
    from pplab.engine.compare_table import format_table
    from pplab.engine.supervisor import RankFailed, Stopped, stop_on_sigterm
    from pplab.runs.catalog import USER_COMPARISONS, user_runs_dir
    from pplab.runs.comparisons import COMPARISON_CSV, COMPARISON_JSON
    from pplab.runs.output_paths import check_writable

    try:
        if args.task not in ("reverse", "sort"):
            raise ValueError(f"--task must be reverse or sort, got {args.task!r}")
        shared = Shared(steps=args.steps, layers=args.layers, d_model=args.d_model,
                        heads=args.heads, d_ff=args.d_ff, seq_len=args.seq_len,
                        batch_size=args.batch_size, task=args.task, lr=args.lr,
                        seed=args.seed, dtype=args.dtype, timeout=args.timeout)
        checked = check_comparison(args.configs, shared)
        largest = max((request for _, request in checked), key=lambda p: p.topology.world_size)
        warning = machine_warning(largest, args.oversubscribe)
        if warning:
            print(f"pplab compare: warning: {warning}", file=sys.stderr, flush=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        # By default beside the user's runs, where the app's Compare page finds it.
        out = Path(args.out) if args.out else user_runs_dir() / USER_COMPARISONS / stamp
        if out.exists():
            raise ValueError(f"{out} already exists; choose a new comparison directory")
        check_writable(out, "--out", folder=True)
        if args.dry_run:
            print(f"pplab compare: {len(checked)} configuration(s), at most "
                  f"{largest.topology.world_size} processes: every check passed; the "
                  f"comparison would be saved in {out}; nothing was started", file=sys.stderr)
            return 0
        with stop_on_sigterm():
            directory, rows = run_comparison(
                args.configs, shared, out, args.description,
                progress=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as error:
        return _fail(str(error).splitlines()[0], 2)
    except RankFailed as error:
        return _fail(f"{error}; no comparison was written", 1)
    except KeyboardInterrupt:
        return _fail("interrupted; no comparison was written", 130)
    except Stopped:
        return _fail("stopped; no comparison was written", 143)
    if args.json:
        print(strict_json(rows, indent=2))
    else:
        print(format_table(rows))
        print()
    for row in rows:
        print(directory / row["run"])
    print(directory / COMPARISON_JSON)
    print(directory / COMPARISON_CSV)
    return 0
