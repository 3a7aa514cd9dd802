"""`pplab demo`: the classic sequence trained for real on this machine, then opened in the lab.

One command for the front of a classroom: GPipe, 1F1B and ZB-H1 on the same pipeline, then
the same model split by tensor parallelism instead, each trained for a few seconds with real
ranks, saved as one comparison and opened on the lab's Compare page. It sizes itself to what
it finds: with GPUs it runs on them (NCCL with a GPU per rank; ranks share a GPU, over gloo,
when there are fewer GPUs than ranks), without them on CPU processes, at most one busy rank
per core so the timelines show the schedules and not CPU sharing.

    pplab demo              # train (about half a minute on 2 cores), then open the lab
    pplab demo --no-open    # train, print where the comparison is and the link that opens it
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pplab.limits import MAX_DEMO_RANKS

BAR_WIDTH = 30
DEMO_SCHEDULES = ("gpipe", "1f1b", "zb-h1")


def demo_size(gpus: int, cores: int) -> tuple[str, int]:
    """(device, ranks): GPUs when there are any (two ranks share one GPU), else CPU ranks,
    no more than the cores, between 2 and ``MAX_DEMO_RANKS``."""
    if gpus >= 1:
        return "cuda", min(max(gpus, 2), MAX_DEMO_RANKS)
    return "cpu", max(2, min(cores, MAX_DEMO_RANKS))


def demo_configs(ranks: int) -> list[str]:
    """The sequence: three pipeline schedules at depth ``ranks``, then tensor parallelism
    over the same ranks (1F1B and tp are the pipeline vs tensor-parallel pair)."""
    microbatches = 2 * ranks
    return ([f"{name}:pp={ranks},m={microbatches}" for name in DEMO_SCHEDULES]
            + [f"tp:tp={ranks}"])


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="train GPipe, 1F1B, zero bubble and tensor parallelism, then open the lab",
        description="Train the classic sequence for a few seconds each on this machine's GPUs "
                    "(or CPU processes) and open the comparison in the lab.")
    parser.add_argument("--steps", type=int, default=8, help="training steps per configuration")
    parser.add_argument("--out", metavar="DIR", help="comparison directory (default: beside "
                        "your runs, where the lab's Compare page finds it)")
    parser.add_argument("--no-open", action="store_true",
                        help="do not start the lab afterwards")
    parser.add_argument("--port", type=int, default=8501, help="the lab's port (default 8501)")
    parser.set_defaults(func=run)
    return parser


class _Bar:
    """One line redrawn in place: configurations done, the current one's step, seconds."""

    def __init__(self, configs: list[str], steps: int) -> None:
        self.configs, self.steps, self.started = configs, steps, time.monotonic()

    def draw(self, index: int, step: int) -> None:
        if not sys.stderr.isatty() and step != self.steps:
            return  # a log, not a terminal: one line per configuration, when it is done
        done = (index + step / self.steps) / len(self.configs)
        filled = int(round(BAR_WIDTH * done))
        print(f"\r[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {100 * done:5.1f} %  "
              f"{index + 1}/{len(self.configs)} {self.configs[index]:<22} step {step}/"
              f"{self.steps}  {time.monotonic() - self.started:4.0f} s",
              end="" if sys.stderr.isatty() else "\n", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from pplab.engine.compare import Shared, run_comparison
    from pplab.engine.machine import cpu_count, gpu_count
    from pplab.engine.supervisor import RankFailed, Stopped, stop_on_sigterm
    from pplab.runs.catalog import USER_COMPARISONS, user_runs_dir

    if not 1 <= args.steps <= 100:
        print(f"pplab demo: --steps must be 1..100, got {args.steps}", file=sys.stderr)
        return 2
    device, ranks = demo_size(gpu_count(), cpu_count())
    configs = demo_configs(ranks)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else user_runs_dir() / USER_COMPARISONS / f"demo-{stamp}"
    where = f"{ranks} GPU ranks" if device == "cuda" else f"{ranks} CPU ranks"
    print(f"pplab demo: {', '.join(configs)} on {where}, {args.steps} steps each",
          file=sys.stderr, flush=True)
    bar = _Bar(configs, args.steps)
    description = (f"pplab demo on {where}: GPipe, 1F1B and ZB-H1 on a {ranks}-stage pipeline "
                   f"with {2 * ranks} microbatches, then the same model over {ranks} "
                   f"tensor-parallel ranks; {args.steps} steps each, one global batch.")
    try:
        with stop_on_sigterm():
            directory, rows = run_comparison(
                configs, Shared(steps=args.steps, d_model=128, seq_len=64, device=device), out,
                description, step_progress=lambda i, message: bar.draw(
                    i, message["step"] if message.get("event") == "step" else 0))
    except ValueError as error:
        print(f"\npplab demo: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    except RankFailed as error:
        print(f"\npplab demo: {error}; no comparison was written", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped):
        print("\npplab demo: stopped; no comparison was written", file=sys.stderr)
        return 130
    print(file=sys.stderr)
    for row in rows:
        print(f"  {row['configuration']:<22} step {1e3 * row['step_time_s']:8.1f} ms   bubble "
              f"{100 * row['bubble_fraction']:5.1f} %  (measured)")
    print(f"pplab demo: saved {directory}")
    url, note = comparison_link(directory, args.port)
    if args.no_open:
        print(f"pplab demo: open it with `pplab lab --port {args.port}`, then {url}"
              + (f" ({note})" if note else ""), flush=True)
        return 0
    from pplab.cli.lab import main as lab_main

    print(f"pplab demo: the comparison opens at {url}" + (f" ({note})" if note else ""),
          flush=True)
    open_when_up(url)
    return lab_main(["--port", str(args.port)])


def comparison_link(directory: Path, port: int) -> tuple[str, str | None]:
    """The Compare page's address that opens the comparison in ``directory``, and a note
    when the lab would not find it there (it lists the runs folder and its comparisons/)."""
    from pplab.runs.catalog import RUNS_ENV, user_comparisons_dirs

    url = f"http://127.0.0.1:{port}/compare?comparison={directory.name}"
    if any(directory.resolve().parent == root.resolve() for root in user_comparisons_dirs()):
        return url, None
    return url, (f"the lab lists comparisons in {user_comparisons_dirs()[-1]}; start it with "
                 f"{RUNS_ENV}={directory.resolve().parent} to find this one")


def open_when_up(url: str, delay_s: float = 4.0) -> None:
    """Open ``url`` in the desktop's browser a few seconds from now, once the lab this
    process is about to become is listening; nothing on a machine without a desktop."""
    import os
    import subprocess

    if not (sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY")
            or os.environ.get("WAYLAND_DISPLAY")):
        return
    code = f"import time, webbrowser; time.sleep({delay_s}); webbrowser.open({url!r})"
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
