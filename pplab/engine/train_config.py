"""What a training run is asked to do: every option of ``pplab train``, checked on its own.

What it teaches: every number of a pipeline run constrains the others (microbatches must
divide the batch, tensor parallelism must divide the heads, a fault must name a rank that
exists). ``TrainConfig`` checks the numbers that need no schedule, each against its bound in
``pplab.limits`` (a whole number where one is meant; finite, positive and bounded where a
real one is); ``pplab.engine.request`` checks the ones that do. Neither imports torch, so the
command
line and the app refuse a bad request in one clear line before any process starts.

    python -c "from pplab.engine.train_config import TrainConfig; TrainConfig(heads=3)"
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from pplab import limits
from pplab.schedules.steps import OPTIMIZER_SYNCS

TASKS = ("reverse", "sort", "text")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
# How a rank's pipeline messages travel on gloo: a process group per direction (the
# default; see pplab.engine.comms), or the world's one group, kept to measure what that costs.
MESSAGE_GROUPS = ("per-direction", "one")
FAULT_KINDS = ("raise", "kill")
_FAULT = re.compile(r"([0-9]+):([0-9]+):([a-z]+)")
# What --force-rollback-at makes of the last stage's gradient: non-finite (a mixed-precision
# overflow), or a spike of 10 x --clip-grad in norm (an exploding gradient to clip).
FORCED_ROLLBACK_KINDS = ("inf", "spike")
_FORCED = re.compile(r"([0-9]+)(?::([a-z]+))?")
SYNTHETIC_VOCAB = 16  # 15 digit tokens and a separator: small enough to learn in minutes


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the toy GPT; ``seed`` fixes its initial weights on every rank."""

    vocab_size: int = SYNTHETIC_VOCAB
    seq_len: int = 16
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 4
    d_ff: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model {self.d_model} is not divisible by {self.n_heads} heads")

    def as_dict(self) -> dict:
        return asdict(self)


class Fault(NamedTuple):
    """``--fault RANK:STEP:raise|kill``: the global process rank that fails, and when."""

    rank: int
    step: int
    how: str


def parse_fault(text: str) -> Fault:
    """Read "RANK:STEP:raise|kill"; RANK is the global process rank, as in the Event table."""
    match = _FAULT.fullmatch(text) if isinstance(text, str) and len(text) < 100 else None
    if match is None or match[3] not in FAULT_KINDS:
        raise ValueError(f"fault must look like RANK:STEP:raise or RANK:STEP:kill, "
                         f"got {str(text)[:100]!r}")
    return Fault(int(match[1]), int(match[2]), match[3])


class ForcedRollback(NamedTuple):
    """``--force-rollback-at STEP[:inf|spike]``: the step whose gradient is spoiled, and how."""

    step: int
    kind: str


def parse_forced_rollback(text: str) -> ForcedRollback:
    """Read "STEP", "STEP:inf" or "STEP:spike" (inf when no kind is given)."""
    match = _FORCED.fullmatch(text) if isinstance(text, str) and len(text) < 100 else None
    if match is None or (match[2] or "inf") not in FORCED_ROLLBACK_KINDS:
        raise ValueError(f"--force-rollback-at must look like STEP, STEP:inf or STEP:spike, "
                         f"got {str(text)[:100]!r}")
    return ForcedRollback(int(match[1]), match[2] or "inf")


def parse_split(text: str) -> tuple[int, ...]:
    """Read "3,3,2" into (3, 3, 2)."""
    parts = text.split(",")
    if len(parts) > limits.MAX_STAGES or not all(p.strip().isascii() and p.strip().isdigit()
                                                 for p in parts):
        raise ValueError(f"--split must be layer counts such as 3,3,2, got {text[:100]!r}")
    return tuple(int(part) for part in parts)


def check_whole_number(name: str, value: object, limit: int, minimum: int = 1) -> int:
    """A whole number in [minimum, limit]; one line naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    limits.check_count(name, value, limit)
    return value


# Every whole-number option: (largest, smallest) value. None is allowed for the optional ones,
# which the request check fills in (pp_size and microbatches from a CSV, layers from the stages...).
_BOUNDS = {
    "pp_size": (limits.MAX_PP_SIZE, 1), "microbatches": (limits.MAX_MICROBATCHES, 1),
    "chunks": (limits.MAX_STAGES, 1), "steps": (limits.MAX_TRAIN_STEPS, 1),
    "layers": (limits.MAX_LAYERS, 1), "batch_size": (limits.MAX_BATCH_SIZE, 1),
    "seq_len": (limits.MAX_SEQ_LEN, 1), "d_model": (limits.MAX_D_MODEL, 1),
    "heads": (limits.MAX_HEADS, 1), "d_ff": (limits.MAX_D_FF, 1),
    "seed": (limits.MAX_SEED, 0), "tp_size": (limits.MAX_WORLD_SIZE, 1),
    "dp_size": (limits.MAX_WORLD_SIZE, 1),
}
_OPTIONAL = ("pp_size", "microbatches", "chunks", "layers", "batch_size", "d_ff")


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``pplab train``.

    ``pp_size`` (pipeline depth P) and ``microbatches`` may stay None when a CSV schedule
    supplies them; ``batch_size`` None means 4 rows per microbatch per data-parallel replica;
    ``layers`` None means one layer per stage, at least 4. ``fault`` ("RANK:STEP:raise|kill")
    makes one process fail on purpose: it is how the failure lesson and the tests show a run
    going down cleanly.

    ``optimizer_sync`` is how the ranks agree on the optimizer's global state (the gradient
    norm ``clip_grad`` clips to, and whether any gradient is non-finite): "barrier" waits for
    every stage before stepping, "post" steps at once and validates afterwards, rolling back
    when the full state disagrees (``pplab.engine.optimizer_sync``). ``force_rollback_at``
    ("STEP[:inf|spike]") spoils the last stage's gradient at STEP so that it must.
    ``message_groups`` "one" sends every pipeline message in the world's group, where two
    ranks sending to each other at once can stall (``pplab.engine.comms``); for comparison.
    """

    schedule: str = "1f1b"
    csv: str | None = None
    pp_size: int | None = None
    microbatches: int | None = None
    chunks: int | None = None
    steps: int = 20
    layers: int | None = None
    split: tuple[int, ...] | None = None
    batch_size: int | None = None
    seq_len: int = 16
    d_model: int = 64
    heads: int = 4
    d_ff: int | None = None
    task: str = "reverse"
    text: str | None = None
    lr: float = 1e-3
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    out: str | None = None
    record: bool = True
    timeout: float = 300.0
    tp_size: int = 1
    dp_size: int = 1
    fault: str | None = None
    optimizer_sync: str = "barrier"
    clip_grad: float | None = None
    force_rollback_at: str | None = None
    message_groups: str = "per-direction"

    def __post_init__(self) -> None:
        if self.split is not None:
            object.__setattr__(self, "split", tuple(self.split))
            limits.check_count("parts of the split", len(self.split), limits.MAX_STAGES)
            for part in self.split:
                check_whole_number("a part of the split", part, limits.MAX_LAYERS)
        for name, (limit, minimum) in _BOUNDS.items():
            value = getattr(self, name)
            if value is not None or name not in _OPTIONAL:
                check_whole_number(name, value, limit, minimum)
        limits.check_finite_number("lr", self.lr, limits.MAX_LEARNING_RATE, positive=True)
        limits.check_finite_number("timeout", self.timeout, limits.MAX_TIMEOUT_S, positive=True)
        for name, value, choices in (("task", self.task, TASKS),
                                     ("device", self.device, DEVICES),
                                     ("dtype", self.dtype, DTYPES),
                                     ("message groups", self.message_groups, MESSAGE_GROUPS)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if self.task == "text" and not self.text:
            raise ValueError("--task text needs --text FILE")
        if self.text and not Path(self.text).is_file():
            raise ValueError(f"text file {self.text} does not exist or is not a regular file")
        if self.text and Path(self.text).stat().st_size > limits.MAX_TEXT_BYTES:
            raise ValueError(f"text file {self.text} is over pplab's limit of "
                             f"{limits.MAX_TEXT_BYTES:,} bytes (pplab.limits)")
        if self.task in ("reverse", "sort") and self.seq_len < 3:
            raise ValueError(f"the {self.task} task needs seq_len >= 3, got {self.seq_len}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by {self.heads} heads")
        if self.heads % self.tp_size:
            raise ValueError(f"{self.heads} heads cannot be split across tp {self.tp_size}")
        if self.mlp_width % self.tp_size:
            raise ValueError(f"MLP width {self.mlp_width} is not divisible by tp {self.tp_size}")
        if self.fault is not None:
            parse_fault(self.fault)
        self._check_optimizer_sync()

    def _check_optimizer_sync(self) -> None:
        if self.optimizer_sync not in OPTIMIZER_SYNCS:
            raise ValueError(f"unknown optimizer sync {self.optimizer_sync!r}; choose one of "
                             f"{', '.join(OPTIMIZER_SYNCS)}")
        if self.clip_grad is not None:
            limits.check_finite_number("clip_grad", self.clip_grad, limits.MAX_CLIP_GRAD,
                                       positive=True)
        forced = None
        if self.force_rollback_at is not None:
            forced = parse_forced_rollback(self.force_rollback_at)
            if forced.step >= self.steps:
                raise ValueError(f"--force-rollback-at step {forced.step} is beyond the run's "
                                 f"{self.steps} steps (steps count from 0)")
            if forced.kind == "spike" and self.clip_grad is None:
                raise ValueError("--force-rollback-at STEP:spike needs --clip-grad: a spike "
                                 "forces a rollback only where the norm is clipped")
        if self.tp_size > 1 and (self.global_state or forced is not None):
            raise ValueError(f"--clip-grad and --optimizer-sync post reduce the gradient norm "
                             f"along the pipeline, one shard per stage; run them with --tp 1, "
                             f"not {self.tp_size}")

    @property
    def global_state(self) -> bool:
        """Whether the ranks agree on the optimizer's global state before it counts: always
        under post-validation; under a barrier only when something reads it."""
        return (self.optimizer_sync == "post" or self.clip_grad is not None
                or self.force_rollback_at is not None)

    @property
    def mlp_width(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    def as_dict(self) -> dict:
        data = asdict(self)
        data["split"] = list(self.split) if self.split else None
        return data


def text_alphabet(path: str, seq_len: int) -> str:
    """The characters of a ``--task text`` corpus, sorted: its tokens, in token order.

    Read the way the data loader reads it (UTF-8, undecodable bytes replaced), so the vocab
    the checked request promises is the one the model gets.
    """
    try:
        content = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if len(content) < seq_len + 2:
        raise ValueError(f"{path} has {len(content)} characters; seq_len {seq_len} needs "
                         f"at least {seq_len + 2}")
    return "".join(sorted(set(content)))


def vocab_size(config: TrainConfig) -> int:
    """Tokens the task uses: 16 for the synthetic tasks, the corpus's characters for text."""
    if config.task == "text":
        return len(text_alphabet(str(config.text), config.seq_len))
    return SYNTHETIC_VOCAB
