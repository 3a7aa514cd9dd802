"""Starting the ranks, watching them, and gathering one measured run.

What it teaches: a pipeline is many processes that must start together, agree on a clock,
and fail together. Locally we spawn one process per rank (one CPU thread each, gloo on CPU,
NCCL with one GPU per rank); they meet through a rendezvous file in a fresh temporary
directory, so two runs never collide on a port. Under ``torchrun`` (RANK and WORLD_SIZE set)
the same entry point runs in place on every machine and rank 0 writes the run.

The parent watches its children. When one raises or dies, the others are terminated at once
(gloo's timeout is the second line of defence), the command fails with that rank's error, and
no run directory is written: a run is complete or absent.

    pplab train --schedule 1f1b --pp 4 --microbatches 8 --steps 20
"""

from __future__ import annotations

import os
import platform
import queue as queue_module
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

import pplab
from pplab.schedules import SCHEDULES, Schedule, build, read_csv, validate

from .config import ModelConfig, TrainConfig, parse_fault
from .partition import split_layers

GRACE_SECONDS = 5.0  # a terminated rank gets this long before it is killed outright
POLL_SECONDS = 0.1


class RankFailed(RuntimeError):
    """A rank raised or died; the message is "rank R failed: <its error>"."""


@dataclass(frozen=True)
class Plan:
    """Everything a rank needs, checked before any process starts."""

    config: TrainConfig
    schedule: Schedule
    model: ModelConfig
    layer_split: tuple[int, ...]
    batch_size: int
    microbatch_size: int
    world_size: int


@dataclass
class RunResult:
    run_dir: Path | None
    events: pd.DataFrame
    metadata: dict
    losses: list[float]


def make_plan(config: TrainConfig) -> Plan:
    """Resolve defaults and cross-check every number; raise ValueError with the wrong ones."""
    if config.csv:
        schedule = read_csv(config.csv)
        if config.pp_size is not None and config.pp_size != schedule.pp_size:
            raise ValueError(f"--pp {config.pp_size} but {config.csv} has "
                             f"{schedule.pp_size} ranks")
        if config.microbatches is not None and config.microbatches != schedule.num_microbatches:
            raise ValueError(f"--microbatches {config.microbatches} but {config.csv} has "
                             f"{schedule.num_microbatches} microbatches")
    else:
        pp_size = config.pp_size or 2
        microbatches = config.microbatches or 4
        options = {}
        family = SCHEDULES.get(config.schedule)
        if family is not None and family.asynchronous:
            options["num_steps"] = config.steps
        schedule = build(config.schedule, pp_size, microbatches, config.chunks, **options)
    validate(schedule)
    if config.out and config.out != "-" and Path(config.out).exists():
        raise ValueError(f"{config.out} already exists; choose a new run directory")
    per_step = schedule.microbatches_per_step
    layers = config.layers or max(4, schedule.num_stages)
    layer_split = split_layers(layers, schedule.num_stages, config.split)
    batch_size = config.batch_size or 4 * per_step * config.dp_size
    if batch_size % (per_step * config.dp_size):
        raise ValueError(f"batch size {batch_size} is not divisible by {per_step} microbatches"
                         + (f" x {config.dp_size} replicas" if config.dp_size > 1 else ""))
    if schedule.is_async and config.dp_size > 1:
        raise ValueError(f"{schedule.name} updates each stage on its own clock; run it with "
                         f"--dp 1, not {config.dp_size}")
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda but no CUDA GPU is visible; use --device cpu")
    world = schedule.pp_size * config.tp_size * config.dp_size
    if config.fault is not None:
        rank, _, _ = parse_fault(config.fault)
        if rank >= world:
            raise ValueError(f"fault rank {rank} is outside the world of {world} ranks")
    from .data import make_task

    vocab = make_task(config.task, config.seq_len, config.text).vocab_size
    model = ModelConfig(vocab_size=vocab, seq_len=config.seq_len, d_model=config.d_model,
                        n_heads=config.heads, n_layers=layers,
                        d_ff=config.d_ff or 4 * config.d_model, seed=config.seed)
    return Plan(config, schedule, model, layer_split, batch_size,
                batch_size // (per_step * config.dp_size), world)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _child(rank: int, world_size: int, plan: Plan, init_method: str, backend: str,
           messages) -> None:
    """Entry point of a spawned rank: train, report, and never leave a traceback behind."""
    import threading

    import torch.distributed as dist

    parent = os.getppid()

    def watch_parent() -> None:
        # A parent killed outright cannot terminate us; do not sit in a receive until timeout.
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        dist.init_process_group(backend, init_method=init_method, rank=rank,
                                world_size=world_size,
                                timeout=timedelta(seconds=plan.config.timeout))

        def on_loss(step: int, loss: float) -> None:
            messages.put(("step", rank, step, loss))

        result = train_rank(plan, rank, on_loss)
        messages.put(("result", rank, result))
        dist.destroy_process_group()
    except BaseException as error:  # report any failure, then exit non-zero
        messages.put(("error", rank, time.time(), _describe(error)))
        messages.close()
        messages.join_thread()
        os._exit(1)


def _backend(config: TrainConfig, ranks_per_host: int) -> tuple[str, bool]:
    """(backend, gpus_shared): NCCL needs a GPU per rank, else gloo through host memory."""
    if config.device != "cuda":
        return "gloo", False
    import torch

    shared = torch.cuda.device_count() < ranks_per_host
    return ("gloo" if shared else "nccl"), shared


@dataclass
class RankContext:
    """One rank, set up and on the shared clock, ready to run steps."""

    executor: object
    recorder: object
    runtimes: dict
    comms: object
    device: object
    backend: str
    reports: bool


def setup_rank(plan: Plan, rank: int, on_loss: Callable[[int, float], None] | None = None,
               before_optim: Callable[[int, dict], None] | None = None) -> RankContext:
    """Build this rank's stages, optimizer, messages and recorder; align the clock.

    ``before_optim(step, runtimes)`` sees the accumulated gradients of a synchronous step
    before the optimizer consumes them: the parity tests read them there.
    """
    import torch
    import torch.distributed as dist

    from .comms import PipeComms, clock_offset_ns
    from .data import make_task, microbatches
    from .executor import Executor
    from .partition import build_stage
    from .recorder import Recorder
    from .stage import StageRuntime
    from .topology import Topology

    torch.set_num_threads(1)
    config, schedule = plan.config, plan.schedule
    topology = Topology(schedule.pp_size, config.tp_size, config.dp_size)
    me = topology.coords(rank)
    groups = topology.build_groups(rank)
    backend = dist.get_backend()
    if config.device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dtype = getattr(torch, config.dtype)
    recorder = Recorder(rank, enabled=config.record,
                        cuda=torch.cuda if device.type == "cuda" else None)
    runtimes: dict[int, StageRuntime] = {}
    for stage in schedule.stages_of(me.pp):
        module = build_stage(plan.model, plan.layer_split, stage, dtype).to(device)
        if config.tp_size > 1:
            from .tensor_parallel import parallelize_stage

            module = parallelize_stage(module, groups.tp_group, me.tp, config.tp_size,
                                       recorder, stage=stage)
        optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
        runtimes[stage] = StageRuntime(
            module, optimizer, 1.0 / schedule.microbatches_per_step, schedule.update_every,
            track_memory=config.record and device.type == "cpu",
            split_backward=any(a.kind == "I" and a.stage == stage
                               for a in schedule.actions[me.pp]))
    task = make_task(config.task, config.seq_len, config.text)

    def batch_for_step(step: int):
        tokens, targets = task.batch(config.seed, step, plan.batch_size)
        return [(x.to(device), y.to(device)) for x, y in microbatches(
            tokens, targets, schedule.microbatches_per_step, me.dp, config.dp_size)]

    after_flush = None
    if config.dp_size > 1:
        from .data_parallel import allreduce_gradients

        def after_flush(runtime: StageRuntime) -> None:
            allreduce_gradients(runtime.module, groups.dp_group, config.dp_size, recorder,
                                stage=runtime.index)

    comms = PipeComms(recorder, lambda r: groups.pp_ranks[r], schedule.num_stages,
                      (plan.microbatch_size, config.seq_len, config.d_model), dtype, device,
                      through_host=device.type == "cuda" and backend == "gloo")
    fault = parse_fault(config.fault) if config.fault else None
    fault = (me.pp, fault[1], fault[2]) if fault and fault[0] == rank else None
    reports = me.pp == schedule.stage_to_rank[-1] and me.tp == 0
    executor = Executor(schedule, me.pp, runtimes, comms, recorder, batch_for_step,
                        after_flush, fault, on_loss if reports and me.dp == 0 else None,
                        before_optim)

    # One clock for all ranks: rank 0's perf_counter after a barrier, broadcast.
    clock_device = device if backend == "nccl" else torch.device("cpu")
    dist.barrier()
    origin = torch.tensor([time.perf_counter_ns()], dtype=torch.int64, device=clock_device)
    dist.broadcast(origin, 0)
    hosts: list = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    offset = clock_offset_ns(clock_device) if len(set(hosts)) > 1 else 0
    recorder.set_origin(int(origin.item()), offset_ns=-offset)
    return RankContext(executor, recorder, runtimes, comms, device, backend, reports)


def train_rank(plan: Plan, rank: int, on_loss: Callable[[int, float], None] | None = None,
               before_optim: Callable[[int, dict], None] | None = None) -> dict:
    """Everything one rank does, once its process group is up; returns what it measured."""
    import torch
    import torch.distributed as dist

    context = setup_rank(plan, rank, on_loss, before_optim)
    executor, recorder, runtimes = context.executor, context.recorder, context.runtimes
    comms, device, backend, reports = (context.comms, context.device, context.backend,
                                       context.reports)
    config, schedule = plan.config, plan.schedule
    started = time.perf_counter()
    step_seconds = []
    if schedule.is_async:
        executor.run_async()
        step_seconds = [(time.perf_counter() - started) / schedule.num_steps] * schedule.num_steps
    else:
        for step in range(config.steps):
            begin = time.perf_counter()
            executor.run_sync_step(step)
            step_seconds.append(time.perf_counter() - begin)
    dist.barrier()
    loop_seconds = time.perf_counter() - started
    if device.type == "cuda":
        peaks = {s: torch.cuda.max_memory_allocated(device) for s in runtimes}
        memory_kind = "cuda max_memory_allocated per rank"
    else:
        peaks = {s: rt.peak_bytes for s, rt in runtimes.items()}
        memory_kind = "saved activations per stage (saved_tensors_hooks)"
    return {
        "rows": recorder.rows_for_timeline(),
        "losses": [executor.step_losses[k] for k in sorted(executor.step_losses)]
        if reports else [],
        "bytes_per_link": dict(comms.bytes_per_link),
        "peak_memory_bytes": peaks,
        "memory_kind": memory_kind,
        "max_live_versions": {s: rt.stash.max_live_versions for s, rt in runtimes.items()
                              if rt.stash is not None},
        "versions": dict(executor.versions),
        "step_seconds": step_seconds,
        "loop_seconds": loop_seconds,
        "device": str(device.type),
        "backend": backend,
        "host": socket.gethostname(),
        "gpu_count": torch.cuda.device_count() if device.type == "cuda" else 0,
        "gpu_names": sorted({torch.cuda.get_device_name(i)
                             for i in range(torch.cuda.device_count())})
        if device.type == "cuda" else [],
    }


def run_training(config: TrainConfig,
                 on_step: Callable[[int, int, float], None] | None = None) -> RunResult:
    """Run a whole training job; ``on_step(step, steps, loss)`` reports progress."""
    plan = make_plan(config)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return _run_in_place(plan, on_step)
    return _run_spawned(plan, on_step)


def _steps_of(plan: Plan) -> int:
    return plan.schedule.num_steps if plan.schedule.is_async else plan.config.steps


def _run_spawned(plan: Plan, on_step) -> RunResult:
    import torch.multiprocessing as mp

    backend, shared = _backend(plan.config, plan.world_size)
    context = mp.get_context("spawn")
    messages = context.Queue()
    rendezvous = Path(tempfile.mkdtemp(prefix="pplab-rdv-"))
    processes = []
    results: dict[int, dict] = {}
    errors: dict[int, tuple[float, str]] = {}
    steps = _steps_of(plan)
    try:
        for rank in range(plan.world_size):
            process = context.Process(
                target=_child, daemon=True,
                args=(rank, plan.world_size, plan, f"file://{rendezvous}/store", backend,
                      messages))
            process.start()
            processes.append(process)
        deadline = time.monotonic() + plan.config.timeout
        failed_since = None
        while len(results) < plan.world_size:
            # Looked at before reading: a rank that has exited has flushed its messages, so
            # an empty queue after this means they are truly missing.
            all_exited = all(p.exitcode == 0 for p in processes)
            try:
                message = messages.get(timeout=POLL_SECONDS)
            except queue_module.Empty:
                message = None
            if message is not None:
                # --timeout stops a stuck run, not a long one: every message is progress.
                deadline = time.monotonic() + plan.config.timeout
                if message[0] == "step" and on_step is not None:
                    on_step(message[2], steps, message[3])
                elif message[0] == "result":
                    results[message[1]] = message[2]
                elif message[0] == "error":
                    errors.setdefault(message[1], (message[2], message[3]))
                continue
            dead = {r: p.exitcode for r, p in enumerate(processes)
                    if p.exitcode not in (None, 0) and r not in errors}
            if errors or dead:
                failed_since = failed_since or time.monotonic()
                # Give a dying rank a moment to deliver its own message before choosing.
                if time.monotonic() - failed_since > 0.5 or not dead:
                    raise RankFailed(_root_cause(errors, dead))
            if time.monotonic() > deadline:
                raise RankFailed(f"rank {_slowest(processes, results)} failed: no progress "
                                 f"within --timeout {plan.config.timeout:g} s")
            if all_exited:
                missing = sorted(set(range(plan.world_size)) - set(results))
                raise RankFailed(f"rank {missing[0]} failed: exited without a result")
    finally:
        _stop(processes)
        messages.close()
        shutil.rmtree(rendezvous, ignore_errors=True)
    return _finish(plan, [results[r] for r in range(plan.world_size)], shared)


def _root_cause(errors: dict[int, tuple[float, str]], dead: dict[int, int]) -> str:
    """The first cause, not its echoes: a rank killed by a signal, else the earliest error."""
    for rank, code in sorted(dead.items()):
        if code < 0:
            return f"rank {rank} failed: killed by signal {-code}"
    if errors:
        rank = min(errors, key=lambda r: errors[r][0])
        return f"rank {rank} failed: {errors[rank][1]}"
    rank, code = min(dead.items())
    return f"rank {rank} failed: exited with code {code}"


def _slowest(processes, results) -> int:
    alive = [r for r, p in enumerate(processes) if p.is_alive() and r not in results]
    return alive[0] if alive else 0


def _stop(processes) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


def _run_in_place(plan: Plan, on_step) -> RunResult:
    """Under torchrun: this process is one rank; rank 0 gathers and writes the run."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != plan.world_size:
        raise ValueError(f"torchrun started {world} ranks; this plan needs {plan.world_size}")
    backend, shared = _backend(plan.config, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=plan.config.timeout))
    except Exception as error:
        raise RankFailed(f"rank {rank} failed: {_describe(error)}") from None
    try:
        steps = _steps_of(plan)
        result = train_rank(plan, rank, lambda s, loss: on_step and on_step(s, steps, loss))
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(result, gathered, dst=0)
    except Exception as error:  # one line per rank, as a spawned run reports it
        raise RankFailed(f"rank {rank} failed: {_describe(error)}") from None
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return RunResult(None, pd.DataFrame(), {}, [])  # rank 0 reports for the whole run
    return _finish(plan, gathered, shared)


def _hardware(results: list[dict], shared: bool) -> dict:
    """What ran the job. ``cpus_shared`` flags more ranks than CPU cores on a host: ranks then
    take turns on a core, and the measured timeline shows that as extra waiting."""
    gpus = sorted({name for r in results for name in r["gpu_names"]})
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hosts = sorted({r["host"] for r in results})
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "hosts": hosts,
            "gpu_names": gpus, "gpu_count": max((r["gpu_count"] for r in results), default=0),
            "gpus_shared": shared, "device": results[0]["device"],
            "cpus_shared": len(results) > len(hosts) * (os.cpu_count() or 1),
            "backend": results[0]["backend"]}


def default_run_dir(plan: Plan) -> Path:
    """runs/<time>-<schedule>-p<P>m<M>, with -2, -3, ... when runs start in the same second."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    schedule = plan.schedule
    base = Path("runs") / (f"{stamp}-{schedule.name}-p{schedule.pp_size}"
                           f"m{schedule.microbatches_per_step}")
    candidate, suffix = base, 1
    while candidate.exists():
        suffix += 1
        candidate = base.with_name(f"{base.name}-{suffix}")
    return candidate


def _finish(plan: Plan, results: list[dict], shared: bool) -> RunResult:
    import torch

    from pplab.schedules import schedule_to_csv_text
    from pplab.simulator import schedule_summary
    from pplab.timeline import events_frame, save_run

    config, schedule = plan.config, plan.schedule
    rows = [row for result in results for row in result["rows"]]
    events = events_frame(rows).sort_values(["start", "rank"], kind="stable")
    events = events.reset_index(drop=True)
    # Every last-stage rank reports its replica's losses; replicas see equal shares, so the
    # full batch's loss is their mean.
    reports = [r["losses"] for r in results if r["losses"]]
    losses = [sum(values) / len(values) for values in zip(*reports, strict=True)]
    bytes_per_link: dict[str, int] = {}
    peaks: dict[str, int] = {}
    versions: dict[str, int] = {}
    for result in results:
        for link, n in result["bytes_per_link"].items():
            bytes_per_link[link] = bytes_per_link.get(link, 0) + n
        for stage, n in result["peak_memory_bytes"].items():
            peaks[str(stage)] = max(peaks.get(str(stage), 0), n)
        versions.update({str(k): v for k, v in result["max_live_versions"].items()})
    metadata = {
        "source": "measured",
        "schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
        "config": config.as_dict(),
        "model": plan.model.as_dict(),
        "layer_split": list(plan.layer_split),
        "batch_size": plan.batch_size,
        "microbatch_size": plan.microbatch_size,
        "loss": losses,
        "time_unit": "s",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "pplab_version": pplab.__version__,
        "torch_version": torch.__version__,
        "hardware": _hardware(results, shared),
        "seed": config.seed,
        "bytes_per_link": bytes_per_link,
        "peak_memory_bytes": peaks,
        "peak_memory_kind": results[0]["memory_kind"],
        "max_live_weight_versions": versions,
        "recorded": config.record,
        "world_size": plan.world_size,
        "pp_size": schedule.pp_size,
        "tp_size": config.tp_size,
        "dp_size": config.dp_size,
        "step_seconds": results[0]["step_seconds"],
    }
    run_dir = None
    if config.out != "-":
        run_dir = save_run(Path(config.out) if config.out else default_run_dir(plan), events,
                           metadata)
    return RunResult(run_dir, events, metadata, losses)


