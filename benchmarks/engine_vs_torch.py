"""pplab's engine beside torch.distributed.pipelining, and the cost of recording.

What it teaches: an executor that records every action can still be as fast as PyTorch's
own pipeline runtime, and close to the ideal the schedule allows. Both train the same toy
GPT stages (same seed, batch, microbatches, Adam step) on 2 CPU ranks with gloo, one thread
each, for gpipe and 1f1b; the script prints the step-time ratio pplab / torch (<= 1.0: pplab
no slower), recording on / off (the cost of the timeline, which should stay under 2 %), and
the step beside its ideal: (m + p - 1)(F + B) with F and B the forward and backward
the recorded steps measured themselves, the step of a pipeline that spends nothing on
messages, Python or the optimizer. Two ideals are printed: from the median F and B (what
one action usually costs) and from their mean (the compute the run actually did: on a
machine others share, a few slow actions raise the mean, and no runtime can step faster
than the work it computes). The three systems take turns step by step and medians
are taken, so load from other processes hits all of them alike.

    python benchmarks/engine_vs_torch.py --steps 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial

SCHEDULES = ("gpipe", "1f1b")


def _torch_runner(request, rank: int):
    """torch.distributed.pipelining on the same stage, batch, loss and optimizer: step(k)."""
    import torch
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    from pplab.engine.data import make_task
    from pplab.engine.model import lm_loss
    from pplab.engine.partition import build_stage

    config = request.config
    module = build_stage(request.model, request.layer_split, rank)
    stage = PipelineStage(module, rank, 2, device=torch.device("cpu"))
    kind = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[config.schedule]
    schedule = kind(stage, n_microbatches=request.schedule.num_microbatches, loss_fn=lm_loss)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    task = make_task(config.task, config.seq_len)

    def step(k: int) -> None:
        tokens, targets = task.batch(config.seed, k, request.batch_size)
        if rank == 0:
            schedule.step(tokens)
        else:
            schedule.step(target=targets, losses=[])
        optimizer.step()
        optimizer.zero_grad()

    return step


def _pplab_runner(request, rank: int):
    """pplab's executor; ``step(k, record)`` runs one step with recording on or off."""
    from pplab.engine.rank_setup import setup_rank

    context = setup_rank(request, rank)

    def step(k: int, record: bool) -> None:
        context.recorder.enabled = record
        for runtime in context.runtimes.values():
            runtime.track_memory = record
        context.executor.run_sync_step(k)

    return step, context.recorder


def _compute_durations(recorder, first_step: int) -> dict[str, list[float]]:
    """Seconds of every F and B the recorder timed from ``first_step`` on (warm-up left out)."""
    out: dict[str, list[float]] = {"F": [], "B": []}
    for kind, _stage, _mb, step, start, end, *_ in recorder.rows:
        if kind in out and step >= first_step:
            out[kind].append((end - start) / 1e9)
    return out


def _request(schedule: str, options: dict):
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    return check_request(TrainConfig(
        schedule=schedule, pp_size=2, microbatches=options["microbatches"], steps=1,
        layers=options["layers"], d_model=options["d_model"], heads=4,
        seq_len=options["seq_len"], batch_size=options["rows"] * options["microbatches"],
        out="-"))


def _rank(rank: int, world: int, report, options: dict) -> dict | None:
    """One rank of the benchmark, started by pplab's supervisor (process group already up)."""
    import torch.distributed as dist

    times: dict[tuple[str, str], list[float]] = {}
    computed: dict[str, dict[str, list[float]]] = {}
    systems = ["recorded", "not recorded", "torch"]
    for schedule in SCHEDULES:
        request = _request(schedule, options)
        (ours, recorder), theirs = _pplab_runner(request, rank), _torch_runner(request, rank)
        run = {"recorded": partial(ours, record=True),
               "not recorded": partial(ours, record=False), "torch": theirs}
        counters = dict.fromkeys(systems, 0)
        # Step by step, in rotating order: load from other processes on the machine falls
        # on all three alike. The first two rounds warm the allocators up and are left out.
        for round_ in range(options["steps"] + 2):
            for label in systems[round_ % 3:] + systems[:round_ % 3]:
                dist.barrier()
                started = time.perf_counter()
                run[label](counters[label])
                dist.barrier()
                if round_ >= 2:
                    times.setdefault((schedule, label), []).append(
                        time.perf_counter() - started)
                counters[label] += 1
            report("step", step=round_)  # progress: the supervisor's timeout means "stuck"
        computed[schedule] = _compute_durations(recorder, first_step=2)
    medians = {key: statistics.median(values) for key, values in times.items()}
    return {"medians": medians if rank == 0 else None, "computed": computed}


def ideal_step(microbatches: int, pp_size: int, forward: float, backward: float) -> float:
    """(m + p - 1)(F + B): GPipe's and 1F1B's step with free messages, Python and optimizer."""
    return (microbatches + pp_size - 1) * (forward + backward)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="measured steps per system")
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8, help="rows per microbatch")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args(argv)
    if min(args.steps, args.microbatches, args.rows, args.layers, args.d_model,
           args.seq_len) < 1:
        print("engine_vs_torch: every count must be at least 1", file=sys.stderr)
        return 2
    from pplab.engine.supervisor import RankFailed, spawn_ranks

    options = {k: getattr(args, k) for k in
               ("steps", "microbatches", "rows", "layers", "d_model", "seq_len")}
    try:
        for schedule in SCHEDULES:
            _request(schedule, options)
    except ValueError as error:
        print(f"engine_vs_torch: {error}", file=sys.stderr)
        return 2
    try:
        results = spawn_ranks(2, _rank, options, backend="gloo", timeout=600)
    except RankFailed as error:
        print(f"engine_vs_torch: {error}", file=sys.stderr)
        return 1
    medians = results[0]["medians"]
    print(f"2 ranks, CPU, gloo, 1 thread each; {args.microbatches} microbatches of {args.rows} "
          f"x {args.seq_len} tokens, d_model {args.d_model}, {args.layers} layers;\n"
          f"median of {args.steps} steps each, barrier to barrier, interleaved (ms, measured);\n"
          f"ideal = (m + p - 1)(F + B) from the median F and B of pplab's recorded steps, "
          f"and from their mean")
    print(f"{'schedule':9} {'pplab':>9} {'torch':>9} {'pplab/torch':>12} {'no record':>10} "
          f"{'record cost':>12} {'F':>7} {'B':>7} {'ideal':>9} {'pplab/ideal':>12} "
          f"{'mean ideal':>11} {'pplab/mean ideal':>17}")
    for schedule in SCHEDULES:
        ours = medians[(schedule, "recorded")]
        theirs = medians[(schedule, "torch")]
        bare = medians[(schedule, "not recorded")]
        durations = {kind: [d for r in results for d in r["computed"][schedule][kind]]
                     for kind in "FB"}
        forward, backward = (statistics.median(durations[kind]) for kind in "FB")
        ideal = ideal_step(args.microbatches, 2, forward, backward)
        mean_ideal = ideal_step(args.microbatches, 2, *(statistics.fmean(durations[kind])
                                                        for kind in "FB"))
        print(f"{schedule:9} {ours * 1e3:9.2f} {theirs * 1e3:9.2f} {ours / theirs:12.3f} "
              f"{bare * 1e3:10.2f} {100 * (ours / bare - 1):+11.1f}% {forward * 1e3:7.2f} "
              f"{backward * 1e3:7.2f} {ideal * 1e3:9.2f} {ours / ideal:12.3f} "
              f"{mean_ideal * 1e3:11.2f} {ours / mean_ideal:17.3f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
