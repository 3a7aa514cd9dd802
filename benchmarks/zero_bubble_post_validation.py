"""ZB-H2 with optimizer post-validation beside ZB-H2 and ZB-H1 with a barrier, trained for real.

What it teaches: ZB-H2's last zero-bubble step is not a schedule but the optimizer's
synchronisation (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 4). With global gradient-norm
clipping, a barrier makes every rank wait for the slowest before stepping, so each step keeps
its fill and ZB-H2 is no faster than ZB-H1; post-validation lets rank 0 start the next step
as soon as its own W's are done. This trains the three on 2 ranks (CPU, gloo), clipping to
``--clip-grad`` in all three, and prints per step in the steady state the step time and the
bubble, measured, and predicted by the simulator from a calibration of the zb-h2 barrier
run (one cost model for all three), each as a ratio to zb-h2 with a barrier.

Runs take turns (``--rounds`` times each, medians kept): on a machine others share, load
then falls on all three alike, but a busy neighbour still moves every figure. And overlapping
the steps pays only where a rank's idle time is an idle core: with more runnable processes
than cores, the overlapped work queues for the same cores, and measures no faster.

    python benchmarks/zero_bubble_post_validation.py
    python benchmarks/zero_bubble_post_validation.py --microbatches 8 --steps 12 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

CONFIGS = (("zb-h2", "post"), ("zb-h2", "barrier"), ("zb-h1", "barrier"))
BASELINE = ("zb-h2", "barrier")


def _train(schedule: str, sync: str, args, out: Path):
    """(events, rollbacks on rank 0) of one real 2-rank run saved in ``out``."""
    from pplab.engine.launch import run_training
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    config = TrainConfig(schedule=schedule, pp_size=2, microbatches=args.microbatches,
                         steps=args.steps, batch_size=8 * args.microbatches, d_model=96,
                         heads=4, seq_len=32, layers=4, optimizer_sync=sync,
                         clip_grad=args.clip_grad, out=str(out))
    result = run_training(check_request(config), out)
    return result.events, len(result.metadata["optimizer_sync"][0]["rollbacks"])


def _overlap(events) -> float:
    """Median time from the last W of step t on any rank to rank 0's first forward of step
    t+1: negative where the next step began before the last one ended."""
    from pplab.timeline.events import EventKind

    ends = events[events["kind"] == EventKind.BACKWARD_WEIGHT].groupby("step")["end"].max()
    forwards = events[(events["kind"] == EventKind.FORWARD) & (events["rank"] == 0)]
    starts = forwards.groupby("step")["start"].min()
    gaps = [starts[step + 1] - ends[step] for step in ends.index if step + 1 in starts.index]
    return statistics.median(gaps[1:] or gaps)


def _predicted(calibration_run: Path, args) -> dict[tuple[str, str], dict]:
    """Steady state of each configuration simulated on the baseline run's calibration."""
    from pplab.calibration import calibration_for, cost_model_for
    from pplab.runs.run_dirs import load_run
    from pplab.schedules import build
    from pplab.schedules.steps import repeat_steps
    from pplab.sim.simulator import simulate
    from pplab.timeline.steady_state import steady_state

    calibration = calibration_for(load_run(calibration_run), save=False)
    out = {}
    for schedule, sync in CONFIGS:
        one = build(schedule, 2, args.microbatches)
        # One optimizer step alone: the barrier's wait and the state's messages are the walk's.
        cost = dataclasses.replace(cost_model_for(calibration, one),
                                   optimizer=calibration.optimizer)
        events = simulate(repeat_steps(one, args.steps), cost, optimizer_sync=sync)
        out[(schedule, sync)] = steady_state(events, range(2))["steady_state"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=4, help="per step (default 4)")
    parser.add_argument("--steps", type=int, default=12, help="steps per run (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--clip-grad", type=float, default=5.0,
                        help="global gradient norm clipped to, in all three (default 5: never "
                             "reached here, as in stable training; 1 clips the first steps, "
                             "and post-validation rolls them back)")
    args = parser.parse_args(argv)
    if args.microbatches < 3 or args.steps < 3 or args.rounds < 1:
        print("zero_bubble_post_validation: zb-h2 on 2 ranks needs --microbatches >= 3; a "
              "steady state needs --steps >= 3; --rounds >= 1", file=sys.stderr)
        return 2
    from pplab.engine.supervisor import RankFailed
    from pplab.timeline.steady_state import steady_state

    load_before = os.getloadavg()[0]
    measured: dict[tuple[str, str], list[tuple[float, float, float]]] = {c: [] for c in CONFIGS}
    rollbacks = dict.fromkeys(CONFIGS, 0)
    with tempfile.TemporaryDirectory() as folder:
        try:
            for round_ in range(args.rounds):
                for schedule, sync in CONFIGS:
                    out = Path(folder) / f"{schedule}-{sync}-{round_}"
                    events, undone = _train(schedule, sync, args, out)
                    state = steady_state(events, range(2))["steady_state"]
                    measured[(schedule, sync)].append(
                        (state["step_time"], state["bubble_fraction"], _overlap(events)))
                    rollbacks[(schedule, sync)] += undone
            predicted = _predicted(Path(folder) / "zb-h2-barrier-0", args)
        except (ValueError, RankFailed) as error:
            print(f"zero_bubble_post_validation: {error}", file=sys.stderr)
            return 1
    median = {c: [statistics.median(run[i] for run in runs) for i in range(3)]
              for c, runs in measured.items()}
    base_measured, base_predicted = median[BASELINE][0], predicted[BASELINE]["step_time"]
    print(f"2 ranks, CPU (gloo), m={args.microbatches}, {args.steps} steps, clip-grad "
          f"{args.clip_grad:g}, median of {args.rounds} runs each; steady state per step; "
          f"predicted from the zb-h2 barrier run's calibration. This machine ({os.cpu_count()} "
          f"cores) is shared with other work, load average {load_before:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after: figures move from run to run, and a rank's idle "
          f"time is no idle core when others' processes wait for one.")
    print(f"{'configuration':<22} {'step ms':>8} {'pred ms':>8} {'ratio':>6} {'pred':>6} "
          f"{'bubble':>7} {'pred':>6} {'next step starts':>17} {'rollbacks':>9}")
    for config in CONFIGS:
        step, bubble, overlap = median[config]
        guess = predicted[config]
        print(f"{config[0] + ' ' + config[1]:<22} {1e3 * step:8.2f} "
              f"{1e3 * guess['step_time']:8.2f} {step / base_measured:6.3f} "
              f"{guess['step_time'] / base_predicted:6.3f} {100 * bubble:6.2f}% "
              f"{100 * guess['bubble_fraction']:5.2f}% {1e3 * overlap:+14.2f} ms "
              f"{rollbacks[config]:9d}", flush=True)
    print("ratio: step time over zb-h2 with a barrier (measured, predicted); next step starts: "
          "rank 0's first forward of step t+1 after the last W of step t (negative: overlap)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
