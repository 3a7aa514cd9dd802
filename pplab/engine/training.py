"""The training loop of one rank, and what it hands back when the run is over.

What it teaches: once a rank is set up (``rank_setup``), training is short. A synchronous
schedule is one step of actions rerun ``--steps`` times (``Executor.run_sync_step``: every
action in the schedule's order, the flush, one optimizer step); an asynchronous one is a
single long walk through all its steps (``Executor.run_async``). A barrier then lets the
slowest rank finish before anyone measures, and the rank hands back its Event rows, losses,
bytes moved and memory peaks for the parent to put into one run directory.

    pplab train --schedule gpipe --pp 2 --microbatches 4 --steps 5
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from pplab.engine.rank_setup import setup_rank
from pplab.engine.request import TrainingRequest


def train_rank(request: TrainingRequest, rank: int,
               on_loss: Callable[[int, float], None] | None = None,
               before_optim: Callable[[int, dict], None] | None = None,
               on_step: Callable[[int], None] | None = None) -> dict:
    """Everything global ``rank`` does once its process group is up; returns what it measured.

    The callbacks are the executor's hooks (see ``pplab.engine.executor.ExecutorHooks``).
    """
    context = setup_rank(request, rank, on_loss, before_optim, on_step)
    executor, runtimes, device = context.executor, context.runtimes, context.device
    started = time.perf_counter()
    if request.schedule.is_async:
        executor.run_async()
        steps = request.num_steps
        step_seconds = [(time.perf_counter() - started) / steps] * steps
    else:
        step_seconds = []
        for step in range(request.num_steps):
            begin = time.perf_counter()
            executor.run_sync_step(step)
            step_seconds.append(time.perf_counter() - begin)
        executor.finish()
    dist.barrier()
    loop_seconds = time.perf_counter() - started

    on_gpu = device.type == "cuda"
    if on_gpu:
        peaks = {s: torch.cuda.max_memory_allocated(device) for s in runtimes}
        memory_kind = "cuda max_memory_allocated per rank"
    else:
        peaks = {s: runtime.peak_bytes for s, runtime in runtimes.items()}
        memory_kind = "saved activations per stage (saved_tensors_hooks)"
    return {
        "rows": context.recorder.rows_for_timeline(),
        "losses": [executor.step_losses[k] for k in sorted(executor.step_losses)]
        if context.reports_loss else [],
        "bytes_per_link": dict(context.comms.bytes_per_link),
        "peak_memory_bytes": peaks,
        "memory_kind": memory_kind,
        "max_live_versions": {s: runtime.stash.max_live_versions
                              for s, runtime in runtimes.items() if runtime.stash is not None},
        "versions": dict(executor.versions),
        "optimizer_sync": executor.sync.summary() if executor.sync is not None else None,
        "step_seconds": step_seconds,
        "loop_seconds": loop_seconds,
        "device": str(device.type),
        "backend": context.backend,
        "host": socket.gethostname(),
        "gpu_count": torch.cuda.device_count() if on_gpu else 0,
        "gpu_names": sorted({torch.cuda.get_device_name(i)
                             for i in range(torch.cuda.device_count())}) if on_gpu else [],
    }
