"""pplab's engine beside torch.distributed.pipelining, and the cost of recording.

What it teaches: an executor that records every action can still be as fast as PyTorch's
own pipeline runtime. Both train the same toy GPT stages (same seed, batch, microbatches,
Adam step) on 2 CPU ranks with gloo, one thread each, for gpipe and 1f1b; the script prints
the step-time ratio pplab / torch (<= 1.0: pplab no slower) and recording on / off (the
cost of the timeline, which should stay under 2 %). Runs of the three systems are
interleaved and medians taken, so load from other processes hits all of them alike.

    python benchmarks/engine_vs_torch.py --repeats 5 --steps 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta


def _torch_seconds(plan, rank: int, steps: int) -> list[float]:
    """Seconds of each step of torch.distributed.pipelining on the same stage and batch."""
    import torch
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    from pplab.engine.data import make_task
    from pplab.engine.model import lm_loss
    from pplab.engine.partition import build_stage

    config = plan.config
    module = build_stage(plan.model, plan.layer_split, rank)
    stage = PipelineStage(module, rank, 2, device=torch.device("cpu"))
    kind = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[config.schedule]
    schedule = kind(stage, n_microbatches=plan.schedule.num_microbatches, loss_fn=lm_loss)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    task = make_task(config.task, config.seq_len)
    dist.barrier()
    seconds = []
    for step in range(steps):
        started = time.perf_counter()
        tokens, targets = task.batch(config.seed, step, plan.batch_size)
        if rank == 0:
            schedule.step(tokens)
        else:
            schedule.step(target=targets, losses=[])
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - started)
    dist.barrier()
    return seconds


def _rank(rank: int, world: int, init_method: str, options: dict, results) -> None:
    import torch
    import torch.distributed as dist

    from pplab.engine.config import TrainConfig
    from pplab.engine.launch import make_plan, train_rank

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=600))
    times: dict[tuple[str, str], list[float]] = {}
    plans = {}
    for schedule in ("gpipe", "1f1b"):
        base = dict(schedule=schedule, stages=2, microbatches=options["microbatches"],
                    steps=options["steps"], layers=options["layers"], d_model=options["d_model"],
                    heads=4, seq_len=options["seq_len"],
                    batch_size=options["rows"] * options["microbatches"], out="-")
        plans[(schedule, "recorded")] = make_plan(TrainConfig(**base))
        plans[(schedule, "not recorded")] = make_plan(TrainConfig(**base, record=False))
    systems = ["recorded", "not recorded", "torch"]
    for repeat in range(options["repeats"]):
        for schedule in ("gpipe", "1f1b"):
            # Interleaving everything, and rotating the order, spreads the load of other
            # processes evenly over the systems compared.
            for label in systems[repeat % 3:] + systems[:repeat % 3]:
                if label == "torch":
                    seconds = _torch_seconds(plans[(schedule, "recorded")], rank,
                                             options["steps"])
                else:
                    seconds = train_rank(plans[(schedule, label)], rank)["step_seconds"]
                # Step 0 pays for first-touch allocations in both runtimes: left out.
                times.setdefault((schedule, label), []).extend(seconds[1:])
    if rank == 0:
        results.put({key: statistics.median(values) for key, values in times.items()})
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8, help="rows per microbatch")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps - 1, args.microbatches, args.rows, args.layers) < 1:
        print("engine_vs_torch: every count must be at least 1, and --steps at least 2",
              file=sys.stderr)
        return 2
    import torch.multiprocessing as mp

    options = {k: getattr(args, k) for k in
               ("repeats", "steps", "microbatches", "rows", "layers", "d_model", "seq_len")}
    context = mp.get_context("spawn")
    results = context.Queue()
    rendezvous = tempfile.mkdtemp(prefix="pplab-bench-")
    try:
        processes = [context.Process(target=_rank, args=(r, 2, f"file://{rendezvous}/store",
                                                           options, results))
                     for r in range(2)]
        for process in processes:
            process.start()
        medians = results.get(timeout=1800)
        for process in processes:
            process.join(60)
        if any(p.exitcode != 0 for p in processes):
            print("engine_vs_torch: a rank failed", file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(rendezvous, ignore_errors=True)
    print(f"2 ranks, CPU, gloo, 1 thread each; {args.microbatches} microbatches of {args.rows} "
          f"x {args.seq_len} tokens, d_model {args.d_model}, {args.layers} layers;\n"
          f"median step on rank 0 over {args.repeats} runs x {args.steps - 1} steps after "
          f"the first (ms, measured)")
    print(f"{'schedule':9} {'pplab':>9} {'torch':>9} {'pplab/torch':>12} {'no record':>10} "
          f"{'record cost':>12}")
    for schedule in ("gpipe", "1f1b"):
        ours = medians[(schedule, "recorded")]
        theirs = medians[(schedule, "torch")]
        bare = medians[(schedule, "not recorded")]
        print(f"{schedule:9} {ours * 1e3:9.2f} {theirs * 1e3:9.2f} {ours / theirs:12.3f} "
              f"{bare * 1e3:10.2f} {100 * (ours / bare - 1):+11.1f}%")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
