"""A training request: schedule, model cut, batch and rank grid, checked without torch.

What it teaches: before one process starts, a pipeline run is a handful of numbers that must
agree. The schedule fixes the depth P and the microbatches; the model needs at least one
layer per stage; the batch must cut into microbatches on every data-parallel replica; an
asynchronous schedule cannot average gradients across replicas; a fault must name a process
and a step that exist; the model, its optimizer state and its activations must fit the
bounds of ``pplab.limits``, and so must the events the run would record. ``check_request``
checks them all and raises ValueError with the numbers that are wrong, so ``pplab train``, ``pplab
compare`` and the app's Run page refuse a bad request with the same one line. It imports no
torch: the engine (``pplab.engine.launch``) adds only the check that a CUDA device is really
there, and that the run directory can be written.

    python -c "from pplab.engine.request import check_request; \
    from pplab.engine.train_config import TrainConfig;
    print(check_request(TrainConfig(pp_size=4, microbatches=8)).describe())"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pplab import limits
from pplab.engine.train_config import Fault, ModelConfig, TrainConfig, parse_fault, vocab_size
from pplab.schedules import SCHEDULES, Schedule, build, read_csv, validate
from pplab.schedules.steps import check_one_stage_per_rank
from pplab.topology import Topology

DEFAULT_PP_SIZE = 2
DEFAULT_MICROBATCHES = 4
ROWS_PER_MICROBATCH = 4  # the default batch: this many rows per microbatch per replica
MIN_DEFAULT_LAYERS = 4
# Event rows one action leaves in a run (its compute, send, receive and wait, measured on
# the bundled runs: 2.5 to 3.5); a tensor-parallel shard adds its all-reduces, per layer.
EVENT_ROWS_PER_ACTION = 4
EVENT_ROWS_PER_TP_LAYER = 4


@dataclass(frozen=True)
class TrainingRequest:
    """A training run as ``check_request`` accepted it: everything a rank needs, checked
    before any process starts. (``pplab plan`` is another thing: the planner's search of
    layouts at scale, ``pplab.planner``.) It is made once per run and handed along, to the
    launch, every rank (through the supervisor) and the run's summary: none of them checks
    the config again."""

    config: TrainConfig
    schedule: Schedule
    model: ModelConfig
    layer_split: tuple[int, ...]
    batch_size: int
    microbatch_size: int
    topology: Topology
    fault: Fault | None = None  # --fault, read and checked against the grid and the steps

    @property
    def num_steps(self) -> int:
        """Training steps: an asynchronous schedule's own count, else ``--steps``."""
        return self.schedule.num_steps if self.schedule.is_async else self.config.steps

    def describe(self) -> str:
        """What the run is, in words: ``1f1b pp=2 m=4``, ``tp=4`` or ``zb-h1 pp=2 m=4 dp=2``."""
        return " ".join(f"{key}={value}" if key else str(value)
                        for key, value in _name_parts(self))


def check_request(config: TrainConfig) -> TrainingRequest:
    """Resolve defaults and cross-check every number; raise ValueError with the wrong ones."""
    schedule = _schedule(config)
    validate(schedule)
    if config.out and config.out != "-" and Path(config.out).exists():
        raise ValueError(f"{config.out} already exists; choose a new run directory")
    topology = Topology(schedule.pp_size, config.tp_size, config.dp_size)
    per_step = schedule.microbatches_per_step
    layers = config.layers or max(MIN_DEFAULT_LAYERS, schedule.num_stages)
    limits.check_count("layers (one per stage)", layers, limits.MAX_LAYERS)
    layer_split = split_layers(layers, schedule.num_stages, config.split)
    replicas = config.dp_size
    batch_size = config.batch_size or ROWS_PER_MICROBATCH * per_step * replicas
    if batch_size % (per_step * replicas):
        raise ValueError(f"batch size {batch_size} is not divisible by {per_step} microbatches"
                         + (f" x {replicas} replicas" if replicas > 1 else ""))
    if schedule.is_async and replicas > 1:
        raise ValueError(f"{schedule.name} updates each stage on its own clock; run it with "
                         f"--dp 1, not {replicas}")
    steps = schedule.num_steps if schedule.is_async else config.steps
    fault = None if config.fault is None else parse_fault(config.fault)
    if fault is not None:
        if fault.rank >= topology.world_size:
            raise ValueError(f"fault rank {fault.rank} is outside the world of "
                             f"{topology.describe()}")
        if fault.step >= steps:
            raise ValueError(f"fault step {fault.step} is beyond the run's {steps} steps "
                             f"(steps count from 0)")
    if config.optimizer_sync == "post":
        check_one_stage_per_rank(schedule)
    elif config.global_state and schedule.is_async:
        raise ValueError(f"{schedule.name} steps each stage on its own clock: there is no "
                         f"global gradient norm to clip or check (drop --clip-grad and "
                         f"--force-rollback-at)")
    if batch_size > limits.MAX_BATCH_SIZE:  # only a default batch can be: the config checks
        raise ValueError(f"the default batch of {ROWS_PER_MICROBATCH} rows x {per_step:,} "
                         f"microbatches x {replicas} replicas = {batch_size:,} rows is over "
                         f"pplab's limit of {limits.MAX_BATCH_SIZE:,} (pplab.limits)")
    model = ModelConfig(vocab_size=vocab_size(config), seq_len=config.seq_len,
                        d_model=config.d_model, n_heads=config.heads, n_layers=layers,
                        d_ff=config.mlp_width, seed=config.seed)
    request = TrainingRequest(config, schedule, model, layer_split, batch_size,
                              batch_size // (per_step * replicas), topology, fault)
    _check_size(request, steps)
    return request


def estimated_training_bytes(request: TrainingRequest) -> int:
    """About what the run holds in memory, all ranks together: weights, gradients and two Adam
    moments of every replica, plus the activations of a whole batch saved for the backward
    (GPipe holds them all at once). Per token and layer a block saves about 16 d_model +
    2 d_ff + 2 heads x seq_len numbers (Korthikanti et al., 2022, eq. 1, at our sizes)."""
    model, config = request.model, request.config
    d, ff, vocab, seq = model.d_model, model.d_ff, model.vocab_size, model.seq_len
    per_layer = 4 * d * d + 2 * d * ff + 9 * d + ff
    parameters = model.n_layers * per_layer + 2 * vocab * d + seq * d + 2 * d + vocab
    element = 8 if config.dtype == "float64" else 4
    tokens = request.batch_size * seq
    activations = tokens * (model.n_layers * (16 * d + 2 * ff + 2 * model.n_heads * seq)
                            + 4 * vocab)
    return (4 * parameters * config.dp_size + activations) * element


def estimated_event_rows(request: TrainingRequest, steps: int) -> int:
    """About how many rows the run's Event table gets (nothing when it records nothing)."""
    if not request.config.record:
        return 0
    grid, schedule = request.topology, request.schedule
    per_action = EVENT_ROWS_PER_ACTION
    if grid.tp_size > 1:
        per_action += EVENT_ROWS_PER_TP_LAYER * max(request.layer_split)
    actions = sum(len(order) for order in schedule.actions.values())
    rounds = 1 if schedule.is_async else steps
    return actions * rounds * grid.tp_size * grid.dp_size * per_action


def _check_size(request: TrainingRequest, steps: int) -> None:
    """Refuse a run the machine should not be asked for, or whose events no lab could open."""
    need = estimated_training_bytes(request)
    if need > limits.MAX_TRAINING_BYTES:
        raise ValueError(f"this model and batch need about {need / 2**30:,.1f} GiB of memory; "
                         f"pplab trains at most {limits.MAX_TRAINING_BYTES / 2**30:g} GiB "
                         f"(pplab.limits): use a smaller --d-model, --layers, --seq-len or "
                         f"--batch-size")
    rows = estimated_event_rows(request, steps)
    if rows > limits.MAX_EVENT_ROWS:
        raise ValueError(f"{steps:,} steps would record about {rows:,} events; a run directory "
                         f"holds at most {limits.MAX_EVENT_ROWS:,} (pplab.limits): use fewer "
                         f"--steps, or --no-record")


def _schedule(config: TrainConfig) -> Schedule:
    if not config.csv:
        family = SCHEDULES.get(config.schedule)
        # An asynchronous schedule covers the whole run: its steps are the run's steps.
        options = {"num_steps": config.steps} if family is not None and family.asynchronous \
            else {}
        return build(config.schedule, config.pp_size or DEFAULT_PP_SIZE,
                     config.microbatches or DEFAULT_MICROBATCHES, config.chunks, **options)
    if not Path(config.csv).is_file():  # a folder, a pipe or a device would be read forever
        raise ValueError(f"{config.csv} is not a file")
    schedule = read_csv(config.csv)
    if config.pp_size is not None and config.pp_size != schedule.pp_size:
        raise ValueError(f"--pp {config.pp_size} but {config.csv} has {schedule.pp_size} ranks")
    if config.microbatches is not None and config.microbatches != schedule.num_microbatches:
        raise ValueError(f"--microbatches {config.microbatches} but {config.csv} has "
                         f"{schedule.num_microbatches} microbatches")
    return schedule


def split_layers(n_layers: int, num_stages: int,
                 explicit: Sequence[int] | None = None) -> tuple[int, ...]:
    """Layer counts per stage: balanced (earlier stages take the remainder) or ``explicit``."""
    if num_stages < 1:
        raise ValueError(f"need at least 1 stage, got {num_stages}")
    if explicit is not None:
        explicit = tuple(int(n) for n in explicit)
        text = ",".join(map(str, explicit))
        if len(explicit) != num_stages:
            raise ValueError(f"the split {text} has {len(explicit)} parts for {num_stages} "
                             f"stages")
        if any(n < 1 for n in explicit):
            raise ValueError(f"every stage needs at least 1 layer, got split {explicit}")
        if sum(explicit) != n_layers:
            raise ValueError(f"the split {text} sums to {sum(explicit)} layers; the model has "
                             f"{n_layers}")
        return explicit
    if num_stages > n_layers:
        raise ValueError(
            f"{num_stages} stages need at least {num_stages} layers; the model has {n_layers}")
    base, extra = divmod(n_layers, num_stages)
    return tuple(base + (1 if s < extra else 0) for s in range(num_stages))


def _name_parts(request: TrainingRequest) -> list[tuple[str, int | str]]:
    """(key, value) pairs that name a run; a run without a pipeline is named by its grid."""
    schedule, grid = request.schedule, request.topology
    parts: list[tuple[str, int | str]] = []
    if grid.pp_size > 1 or grid.world_size == 1:
        parts += [("", schedule.name), ("pp", grid.pp_size),
                  ("m", schedule.microbatches_per_step)]
        if schedule.num_chunks > 1:
            parts.append(("v", schedule.num_chunks))
    parts += [(key, size) for key, size in (("tp", grid.tp_size), ("dp", grid.dp_size))
              if size > 1]
    if grid.pp_size == 1 and grid.world_size > 1 and schedule.microbatches_per_step > 1:
        parts.append(("m", schedule.microbatches_per_step))
    return parts


def run_label(request: TrainingRequest) -> str:
    """A folder-name label: ``1f1b-p2m4``, ``interleaved-1f1b-p2m4v2-tp2``, ``tp4``, ``dp2-m2``.

    The one naming of runs: ``pplab train``'s default folder, the app's runs and the folders
    of a ``pplab compare`` all use it.
    """
    parts = dict(_name_parts(request))
    words = []
    if "pp" in parts:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(parts[""])).strip("-.") or "custom"
        words.append(f"{name}-p{parts['pp']}m{parts['m']}" + (f"v{parts['v']}" if "v" in parts
                                                             else ""))
    words += [f"{key}{parts[key]}" for key in ("tp", "dp") if key in parts]
    if "pp" not in parts and "m" in parts:
        words.append(f"m{parts['m']}")
    return "-".join(words)


def new_run_dir(root: str | Path, request: TrainingRequest, now: datetime | None = None) -> Path:
    """``root/<UTC time>-<run_label>``, with -2, -3, ... when runs start in the same second."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{run_label(request)}"
    candidate, suffix = base, 1
    while candidate.exists():
        suffix += 1
        candidate = base.with_name(f"{base.name}-{suffix}")
    return candidate
