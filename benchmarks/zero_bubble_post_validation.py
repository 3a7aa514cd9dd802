"""ZB-H2 with optimizer post-validation beside ZB-H2 and ZB-H1 with a barrier, trained for real.

What it teaches: ZB-H2's last zero-bubble step is not a schedule but the optimizer's
synchronisation (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 4). With global gradient-norm
clipping, a barrier makes every rank wait for the slowest before stepping, so each step keeps
its fill; post-validation lets rank 0 start the next step as soon as its own W's are done.
This trains the three on 2 ranks (CPU, gloo), clipping to ``--clip-grad`` in all three, and
prints per step in the steady state the step time and the bubble, measured, and predicted by
the simulator from a calibration of the zb-h2 barrier steps (one cost model for all three),
each as a ratio to zb-h2 with a barrier.

The three share one set of processes and take turns in blocks of ``--block`` steps (the
steps of a block follow one another, so post-validation's can overlap; the blocks rotate, so
a busy neighbour's load falls on all three alike), medians over the blocks kept. Overlapping
pays only where a rank's idle time is an idle core: with more runnable processes than cores,
the overlapped work queues for the same cores and measures no faster.

    python benchmarks/zero_bubble_post_validation.py
    python benchmarks/zero_bubble_post_validation.py --microbatches 8 --blocks 8 --block 6
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import statistics
import sys
from pathlib import Path

CONFIGS = (("zb-h2", "post"), ("zb-h2", "barrier"), ("zb-h1", "barrier"))
BASELINE = ("zb-h2", "barrier")


def _request(schedule: str, sync: str, options: dict):
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    return check_request(TrainConfig(
        schedule=schedule, pp_size=2, microbatches=options["microbatches"],
        steps=options["blocks"] * options["block"], batch_size=8 * options["microbatches"],
        d_model=96, heads=4, seq_len=32, layers=4, optimizer_sync=sync,
        clip_grad=options["clip_grad"], out="-"))


def _rank(rank: int, world: int, report, options: dict) -> list:
    """One rank: the three set up once, then blocks of consecutive steps of each in turn (the
    order rotating per block), a barrier between blocks. Each one's Event rows and verdicts."""
    import torch.distributed as dist

    from pplab.engine.rank_setup import setup_rank

    contexts = [setup_rank(_request(*config, options), rank) for config in CONFIGS]
    for block in range(options["blocks"]):
        shift = block % len(CONFIGS)
        for index in list(range(shift, len(CONFIGS))) + list(range(shift)):
            dist.barrier()
            for step in range(block * options["block"], (block + 1) * options["block"]):
                contexts[index].executor.run_sync_step(step)
        report("step", step=block)  # progress: the supervisor's timeout means "stuck"
    for context in contexts:
        context.executor.finish()
    dist.barrier()
    return [(context.recorder.rows_for_timeline(), context.executor.sync.summary())
            for context in contexts]


def _per_block(events, options: dict) -> list[tuple[float, float, float]]:
    """(step time, bubble, next-step start after the last W) in each block's steady state."""
    from pplab.timeline.steady_state import steady_state

    out = []
    for block in range(1, options["blocks"]):  # the first block warms up
        steps = range(block * options["block"], (block + 1) * options["block"])
        mine = events[events["step"].isin(steps)]
        state = steady_state(mine, range(2))["steady_state"]
        ends = mine[mine["kind"] == "W"].groupby("step")["end"].max()
        starts = mine[(mine["kind"] == "F") & (mine["rank"] == 0)].groupby("step")["start"].min()
        gap = statistics.median(starts[s + 1] - ends[s] for s in steps[:-1])
        out.append((state["step_time"], state["bubble_fraction"], gap))
    return out


def _calibrated(events, options: dict):
    """The cost model of the zb-h2 barrier steps, fitted as pplab predict fits a run."""
    from pplab.calibration import cost_model_for, fit
    from pplab.engine.machine import cpu_count
    from pplab.runs.run_dirs import Run
    from pplab.schedules import schedule_to_csv_text
    from pplab.sim.simulator import schedule_summary

    request = _request(*BASELINE, options)
    meta = {"source": "measured", "time_unit": "s", "world_size": 2, "pp_size": 2,
            "tp_size": 1, "dp_size": 1, "layer_split": list(request.layer_split),
            "schedule": {**schedule_summary(request.schedule),
                         "csv": schedule_to_csv_text(request.schedule)},
            "config": {"device": "cpu"},
            "hardware": {"device": "cpu", "cpu_count": cpu_count(),
                         "hosts": [socket.gethostname()]}}
    calibration = fit(Run(Path("zb-h2-barrier"), events.reset_index(drop=True), meta))
    # One optimizer step alone: the barrier's wait and the state's messages are the walk's.
    return dataclasses.replace(cost_model_for(calibration, request.schedule),
                               optimizer=calibration.optimizer)


def _predicted(cost, options: dict) -> dict[tuple[str, str], dict]:
    from pplab.schedules import build
    from pplab.schedules.steps import repeat_steps
    from pplab.sim.simulator import simulate
    from pplab.timeline.steady_state import steady_state

    out = {}
    for schedule, sync in CONFIGS:
        events = simulate(repeat_steps(build(schedule, 2, options["microbatches"]),
                                       options["block"]), cost, optimizer_sync=sync)
        out[(schedule, sync)] = steady_state(events, range(2))["steady_state"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=4, help="per step (default 4)")
    parser.add_argument("--blocks", type=int, default=6,
                        help="turns each configuration takes (default 6; the first warms up)")
    parser.add_argument("--block", type=int, default=5,
                        help="consecutive steps per turn (default 5)")
    parser.add_argument("--clip-grad", type=float, default=5.0,
                        help="global gradient norm clipped to, in all three (default 5: never "
                             "reached here, as in stable training; 1 clips the first steps, "
                             "and post-validation rolls them back)")
    args = parser.parse_args(argv)
    if args.microbatches < 3 or args.blocks < 2 or args.block < 3:
        print("zero_bubble_post_validation: zb-h2 on 2 ranks needs --microbatches >= 3; a "
              "steady state needs --blocks >= 2 and --block >= 3", file=sys.stderr)
        return 2
    from pplab.engine.supervisor import RankFailed, spawn_ranks
    from pplab.timeline import events_frame

    options = {"microbatches": args.microbatches, "blocks": args.blocks, "block": args.block,
               "clip_grad": args.clip_grad}
    load_before = os.getloadavg()[0]
    try:
        per_rank = spawn_ranks(2, _rank, options, backend="gloo", timeout=900)
    except (ValueError, RankFailed) as error:
        print(f"zero_bubble_post_validation: {error}", file=sys.stderr)
        return 1
    measured, rollbacks = {}, {}
    for index, config in enumerate(CONFIGS):
        events = events_frame(row for rank_rows in per_rank for row in rank_rows[index][0])
        blocks = _per_block(events, options)
        measured[config] = [statistics.median(block[i] for block in blocks) for i in range(3)]
        rollbacks[config] = sum(len(rank_rows[index][1]["rollbacks"]) for rank_rows in per_rank)
        if config == BASELINE:
            predicted = _predicted(_calibrated(events[events["step"] >= args.block], options),
                                   options)
    base_measured, base_predicted = measured[BASELINE][0], predicted[BASELINE]["step_time"]
    print(f"2 ranks, CPU (gloo), m={args.microbatches}, clip-grad {args.clip_grad:g}; "
          f"{args.blocks} turns of {args.block} steps each, the three taking turns, medians of "
          f"the turns after the first; steady state per step; predicted from the zb-h2 "
          f"barrier steps' calibration. This machine ({os.cpu_count()} cores) is shared with "
          f"other work, load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} "
          f"after: figures move from run to run.")
    print(f"{'configuration':22} {'step ms':>8} {'pred ms':>8} {'ratio':>6} {'pred':>6} "
          f"{'bubble':>7} {'pred':>6} {'next step starts':>17} {'rollbacks':>9}")
    for config in CONFIGS:
        step, bubble, gap = measured[config]
        guess = predicted[config]
        print(f"{config[0] + ' ' + config[1]:22} {1e3 * step:8.2f} "
              f"{1e3 * guess['step_time']:8.2f} {step / base_measured:6.3f} "
              f"{guess['step_time'] / base_predicted:6.3f} {100 * bubble:6.2f}% "
              f"{100 * guess['bubble_fraction']:5.2f}% {1e3 * gap:+14.2f} ms "
              f"{rollbacks[config]:9d}", flush=True)
    print("ratio: step time over zb-h2 with a barrier (measured, predicted); next step starts: "
          "rank 0's first forward of step t+1 after the last W of step t (negative: overlap)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
