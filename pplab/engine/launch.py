"""A whole training run: check it, start its ranks, and gather one measured run directory.

What it teaches: the path of ``pplab train`` from a request to a run directory, in order.

1. ``pplab.engine.request.check_request`` checks every number once, without torch, and
   ``output_dir`` picks and checks the run directory; the caller hands both to
   ``run_training``, which adds only that a CUDA device is really there when ``--device
   cuda`` asks for one. The same checked request then travels to every rank.
2. Locally, ``supervisor.spawn_ranks`` starts one process per rank (gloo on CPU, NCCL with
   one GPU per rank) and watches them; under ``torchrun`` (RANK and WORLD_SIZE set) this
   process is one of the ranks and rank 0 gathers the others' results.
3. Each rank runs ``training.train_rank``: set up (``rank_setup``), walk the schedule every
   step (``executor``), hand back what it measured.
4. ``_finish`` merges the ranks' Event rows and numbers into one run directory, written
   atomically: when a rank fails the run fails with that rank's error and no directory is
   written, so a run is complete or absent.

    pplab train --schedule 1f1b --pp 4 --microbatches 8 --steps 20
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

import pplab
from pplab.engine.machine import cpu_count, launched_by_torchrun
from pplab.engine.request import TrainingRequest, new_run_dir
from pplab.engine.supervisor import RankFailed, Report, describe_error, spawn_ranks

# on_progress gets one dict per thing worth telling: {"event": "started", "started", "ranks"}
# and {"event": "ready", "ready", "ranks"} as ranks come up, {"event": "step", "step"
# (1-based), "steps", "loss"} as steps finish.
OnProgress = Callable[[dict], None]
# What a run directory takes on disk, to refuse a full disk before training: its metadata
# (the schedule's CSV text included) and the Event table, a few dozen bytes a row in parquet.
RUN_DIR_BYTES = 2**20
RUN_DIR_BYTES_PER_EVENT = 48

__all__ = ["RankFailed", "RunResult", "check_device", "output_dir", "run_training"]


@dataclass
class RunResult:
    run_dir: Path | None
    events: pd.DataFrame
    metadata: dict
    losses: list[float]


def check_device(request: TrainingRequest) -> None:
    """The one check of a request that needs torch: a CUDA run needs a visible CUDA GPU."""
    if request.config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda but no CUDA GPU is visible; use --device cpu")


def output_dir(request: TrainingRequest) -> Path | None:
    """Where the run will be saved (None for ``--out -``), checked now: a folder that cannot
    take it (under a file, read-only, full) is refused before any rank starts, not after
    the last step. The default is a new folder under the user's runs folder."""
    from pplab.engine.request import estimated_event_rows
    from pplab.runs.output_paths import check_writable

    if request.config.out == "-":
        return None
    if request.config.out:
        target = Path(request.config.out)
    else:
        from pplab.runs.catalog import user_runs_dir

        target = new_run_dir(user_runs_dir(), request)
    need = (RUN_DIR_BYTES
            + RUN_DIR_BYTES_PER_EVENT * estimated_event_rows(request, request.num_steps))
    check_writable(target, "--out", need_bytes=need, folder=True)
    return target


def run_training(request: TrainingRequest, run_dir: Path | None,
                 on_progress: OnProgress | None = None) -> RunResult:
    """Run a whole training job, checked once by ``check_request``, and save it in
    ``run_dir`` (as ``output_dir(request)`` chose and checked it; None saves nothing)."""
    check_device(request)
    if launched_by_torchrun():
        return _run_in_place(request, run_dir, on_progress)
    return _run_spawned(request, run_dir, on_progress)


def train_spawned_rank(rank: int, world_size: int, report: Report,
                       request: TrainingRequest) -> dict:
    """What each spawned process runs: train, telling the parent each step it begins and
    each loss it computes (the supervisor's measure of progress)."""
    from pplab.engine.training import train_rank

    return train_rank(request, rank,
                      on_loss=lambda step, loss: report("loss", step=step, loss=loss),
                      on_step=lambda step: report("step", step=step))


def _progress_relay(request: TrainingRequest, on_progress: OnProgress | None,
                    replicas: int | None = None):
    """Turn the ranks' reports into the run's progress: how many ranks have started (Python
    and torch loaded), how many are ready (set up, beginning their first step), the steps.

    A step's loss is told once each of the ``replicas`` (every data-parallel replica's last
    stage, by default) has reported it, as their mean in rank order: the number the run's
    summary and meta.json give for that step, not one replica's share of the batch."""
    counted: dict[str, set[int]] = {"started": set(), "ready": set()}
    world = request.topology.world_size
    replicas = request.topology.dp_size if replicas is None else replicas
    losses: dict[int, dict[int, float]] = {}  # step -> rank -> loss, until every replica's

    def count(phase: str, rank: int) -> None:
        if rank not in counted[phase]:
            counted[phase].add(rank)
            on_progress({"event": phase, phase: len(counted[phase]), "ranks": world})

    def on_report(rank: int, event: str, fields: dict) -> None:
        if on_progress is None:
            return
        if event == "started":
            count("started", rank)
        elif event == "step":
            count("ready", rank)
        elif event == "loss":
            told = losses.setdefault(fields["step"], {})
            told[rank] = fields["loss"]
            if len(told) == replicas:
                values = [told[r] for r in sorted(told)]
                on_progress({"event": "step", "step": fields["step"] + 1,
                             "steps": request.num_steps, "loss": sum(values) / len(values)})
                del losses[fields["step"]]

    return on_report


def choose_backend(device: str, ranks_per_host: int) -> tuple[str, bool]:
    """(backend, gpus_shared): NCCL needs a GPU per rank, else gloo through host memory."""
    if device != "cuda":
        return "gloo", False  # decided without importing torch: the parent never needs it
    import torch

    shared = torch.cuda.device_count() < ranks_per_host
    return ("gloo" if shared else "nccl"), shared


def _run_spawned(request: TrainingRequest, run_dir: Path | None,
                 on_progress: OnProgress | None) -> RunResult:
    world = request.topology.world_size
    backend, gpus_shared = choose_backend(request.config.device, world)
    results = spawn_ranks(world, train_spawned_rank, request, backend=backend,
                          timeout=request.config.timeout,
                          on_report=_progress_relay(request, on_progress))
    return _finish(request, results, gpus_shared, run_dir)


def _run_in_place(request: TrainingRequest, run_dir: Path | None,
                  on_progress: OnProgress | None) -> RunResult:
    """Under torchrun: this process is one rank; rank 0 gathers and writes the run."""
    import torch.distributed as dist

    from pplab.engine.training import train_rank

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != request.topology.world_size:
        raise ValueError(f"torchrun started {world} ranks; this request needs "
                         f"{request.topology.describe()}")
    backend, gpus_shared = choose_backend(request.config.device,
                                          int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=request.config.timeout))
    except Exception as error:
        raise RankFailed(f"rank {rank} failed: {describe_error(error)}") from None
    # under torchrun each process tells only its own progress: the first replica's loss
    relay = _progress_relay(request, on_progress, replicas=1)
    first_replica = request.topology.coords(rank).dp == 0
    try:
        result = train_rank(request, rank,
                            on_loss=lambda step, loss: first_replica and relay(
                                rank, "loss", {"step": step, "loss": loss}))
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(result, gathered, dst=0)
    except Exception as error:  # one line per rank, as a spawned run reports it
        raise RankFailed(f"rank {rank} failed: {describe_error(error)}") from None
    finally:
        # Tearing down is not the run: a failure here neither fails a run that finished nor
        # hides the error of one that did not.
        with suppress(Exception):
            dist.destroy_process_group()
    if rank != 0:
        return RunResult(None, pd.DataFrame(), {}, [])  # rank 0 reports for the whole run
    return _finish(request, gathered, gpus_shared, run_dir)


def _hardware(results: list[dict], gpus_shared: bool) -> dict:
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
    return {"cpu": cpu, "cpu_count": cpu_count(), "hosts": hosts,
            "gpu_names": gpus, "gpu_count": max((r["gpu_count"] for r in results), default=0),
            "gpus_shared": gpus_shared, "device": results[0]["device"],
            "cpus_shared": len(results) > len(hosts) * cpu_count(),
            "backend": results[0]["backend"]}


def _finish(request: TrainingRequest, results: list[dict], gpus_shared: bool,
            run_dir: Path | None) -> RunResult:
    """Merge every rank's results into one Event table and meta.json; save them in
    ``run_dir`` (None: save nothing)."""
    from pplab.runs.run_dirs import save_run
    from pplab.schedules import schedule_to_csv_text
    from pplab.sim.simulator import schedule_summary
    from pplab.timeline import events_frame

    config, schedule, topology = request.config, request.schedule, request.topology
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
        # The schedule's own CSV text, not the path it came from: the run replays anywhere.
        "schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
        "config": config.as_dict(),
        "model": request.model.as_dict(),
        "layer_split": list(request.layer_split),
        "batch_size": request.batch_size,
        "microbatch_size": request.microbatch_size,
        "loss": losses,
        "time_unit": "s",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "pplab_version": pplab.__version__,
        "torch_version": importlib.metadata.version("torch"),
        "hardware": _hardware(results, gpus_shared),
        "seed": config.seed,
        "bytes_per_link": bytes_per_link,
        "peak_memory_bytes": peaks,
        "peak_memory_kind": results[0]["memory_kind"],
        "max_live_weight_versions": versions,
        "recorded": config.record,
        "world_size": topology.world_size,
        "pp_size": topology.pp_size,
        "tp_size": topology.tp_size,
        "dp_size": topology.dp_size,
        "step_seconds": results[0]["step_seconds"],
    }
    if config.global_state:  # each rank's optimizer verdicts, rollbacks and backup bytes
        metadata["optimizer_sync"] = [result["optimizer_sync"] for result in results]
    if run_dir is not None:
        save_run(run_dir, events, metadata)
    return RunResult(run_dir, events, metadata, losses)
