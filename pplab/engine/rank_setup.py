"""Setting up one rank: its place in the grid, its stages, its messages and a shared clock.

What it teaches: what a process does between joining the process group and running its first
action. It finds its coordinates (pipeline position, data replica, tensor shard) in the
``Topology``, builds only the model stages the schedule places on its pipeline position
(sliced from one seeded model, then cut into tensor-parallel shards), gives each an
optimizer, and wires the executor to the rest: point-to-point messages to its pipeline
neighbours, gradient averaging with its data-parallel peers, the batch of each step rebuilt
from the seed, and a recorder on a clock every rank agrees on.

    pplab train --schedule 1f1b --pp 2 --tp 2 --microbatches 4 --steps 3
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pplab.engine.comms import PipeComms, clock_offset_ns, direction_groups
from pplab.engine.data import make_task, microbatches
from pplab.engine.executor import Executor, ExecutorHooks
from pplab.engine.partition import build_stage
from pplab.engine.recorder import Recorder
from pplab.engine.request import TrainingRequest
from pplab.engine.stage import StageRuntime
from pplab.schedules.actions import BACKWARD_INPUT


@dataclass
class RankContext:
    """One rank, set up and on the shared clock, ready to run steps."""

    executor: Executor
    recorder: Recorder
    runtimes: dict[int, StageRuntime]
    comms: PipeComms
    device: torch.device
    backend: str
    reports_loss: bool  # a last-stage process of tensor shard 0: it computes the loss


def setup_rank(request: TrainingRequest, rank: int,
               on_loss: Callable[[int, float], None] | None = None,
               before_optim: Callable[[int, dict], None] | None = None,
               on_step: Callable[[int], None] | None = None) -> RankContext:
    """Build global ``rank``'s stages, optimizer, messages and recorder; align the clock.

    The callbacks are the executor's hooks (see ``ExecutorHooks``); ``on_loss`` is kept only
    on the one process of each data-parallel replica that reports its loss (its last stage's
    first tensor-parallel rank): the parent tells their mean, the step's loss.
    """
    torch.set_num_threads(1)
    config, schedule = request.config, request.schedule
    me = request.topology.coords(rank)
    groups = request.topology.build_groups(rank)
    backend = dist.get_backend()
    device = _device(config.device, rank)
    dtype = getattr(torch, config.dtype)
    recorder = Recorder(rank, enabled=config.record,
                        cuda=torch.cuda if device.type == "cuda" else None, coords=me)

    runtimes: dict[int, StageRuntime] = {}
    for stage in schedule.stages_of(me.pp):
        module = build_stage(request.model, request.layer_split, stage, dtype).to(device)
        if config.tp_size > 1:
            from pplab.engine.tensor_parallel import parallelize_stage

            module = parallelize_stage(module, groups.tp_group, me.tp, config.tp_size,
                                       recorder, stage=stage)
        optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
        runtimes[stage] = StageRuntime(
            module, optimizer, 1.0 / schedule.microbatches_per_step, schedule.update_every,
            track_memory=config.record and device.type == "cpu",
            split_backward=any(a.kind == BACKWARD_INPUT and a.stage == stage
                               for _, a in schedule.all_actions()))

    task = make_task(config.task, config.seq_len, config.text)

    def batch_for_step(step: int):
        tokens, targets = task.batch(config.seed, step, request.batch_size)
        return [(x.to(device), y.to(device)) for x, y in microbatches(
            tokens, targets, schedule.microbatches_per_step, me.dp, config.dp_size)]

    after_flush = None
    if config.dp_size > 1:
        from pplab.engine.data_parallel import allreduce_gradients

        def after_flush(runtime: StageRuntime) -> None:
            allreduce_gradients(runtime.module, groups.dp_group, config.dp_size, recorder,
                                stage=runtime.index)

    comms = PipeComms(recorder, lambda pp_rank: groups.pp_ranks[pp_rank], schedule.num_stages,
                      (request.microbatch_size, config.seq_len, config.d_model), dtype, device,
                      through_host=device.type == "cuda" and backend == "gloo",
                      directions=direction_groups(backend)
                      if config.message_groups == "per-direction" else None)
    fault = request.fault
    reports_loss = me.pp == schedule.stage_to_rank[-1] and me.tp == 0
    # every replica's last stage tells its loss: the step's loss is their mean
    hooks = ExecutorHooks(after_flush, before_optim, on_loss if reports_loss else None,
                          on_step)
    sync = None
    if config.global_state:
        from pplab.engine.optimizer_sync import make_optimizer_sync

        sync = make_optimizer_sync(config, schedule, request.topology, rank, recorder, backend)
    executor = Executor(schedule, me.pp, runtimes, comms, recorder, batch_for_step, hooks,
                        fault if fault is not None and fault.rank == rank else None, sync)
    _align_clock(recorder, device, backend)
    return RankContext(executor, recorder, runtimes, comms, device, backend, reports_loss)


def _device(device: str, rank: int) -> torch.device:
    if device != "cuda":
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(chosen)
    return chosen


def _align_clock(recorder: Recorder, device: torch.device, backend: str) -> None:
    """One clock for all ranks: rank 0's perf_counter after a barrier, broadcast; ranks on
    other hosts add their estimated offset to rank 0 (see ``comms.clock_offset_ns``)."""
    clock_device = device if backend == "nccl" else torch.device("cpu")
    dist.barrier()
    origin = torch.tensor([time.perf_counter_ns()], dtype=torch.int64, device=clock_device)
    dist.broadcast(origin, 0)
    hosts: list = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    offset = clock_offset_ns(clock_device) if len(set(hosts)) > 1 else 0
    recorder.set_origin(int(origin.item()), offset_ns=-offset)
