"""What a training run is asked to do: every option of ``pplab train``, checked on its own.

What it teaches: every number of a pipeline run constrains the others (microbatches must
divide the batch, tensor parallelism must divide the heads, a fault must name a rank that
exists). ``TrainConfig`` checks the numbers that need no schedule; ``pplab.plan`` checks the
ones that do. Neither imports torch, so the command line and the app refuse a bad request
in one clear line before any process starts.

    python -c "from pplab.train_config import TrainConfig; TrainConfig(heads=3)"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

TASKS = ("reverse", "sort", "text")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
FAULT_KINDS = ("raise", "kill")
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
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() \
            or parts[2] not in FAULT_KINDS:
        raise ValueError(f"fault must look like RANK:STEP:raise or RANK:STEP:kill, got {text!r}")
    return Fault(int(parts[0]), int(parts[1]), parts[2])


def parse_split(text: str) -> tuple[int, ...]:
    """Read "3,3,2" into (3, 3, 2)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--split must be layer counts such as 3,3,2, got {text!r}") from None


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``pplab train``.

    ``pp_size`` (pipeline depth P) and ``microbatches`` may stay None when a CSV schedule
    supplies them; ``batch_size`` None means 4 rows per microbatch per data-parallel replica;
    ``layers`` None means one layer per stage, at least 4. ``fault`` ("RANK:STEP:raise|kill")
    makes one process fail on purpose: it is how the failure lesson and the tests show a run
    going down cleanly.
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

    def __post_init__(self) -> None:
        if self.split is not None:
            object.__setattr__(self, "split", tuple(int(n) for n in self.split))
        positive = {"steps": self.steps, "seq_len": self.seq_len, "d_model": self.d_model,
                    "heads": self.heads, "tp_size": self.tp_size, "dp_size": self.dp_size}
        for name in ("pp_size", "microbatches", "chunks", "layers", "batch_size", "d_ff"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name, value, choices in (("task", self.task, TASKS),
                                     ("device", self.device, DEVICES),
                                     ("dtype", self.dtype, DTYPES)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if self.task == "text" and not self.text:
            raise ValueError("--task text needs --text FILE")
        if self.text and not Path(self.text).is_file():
            raise ValueError(f"text file {self.text} does not exist")
        if self.task in ("reverse", "sort") and self.seq_len < 3:
            raise ValueError(f"the {self.task} task needs seq_len >= 3, got {self.seq_len}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by {self.heads} heads")
        if self.heads % self.tp_size:
            raise ValueError(f"{self.heads} heads cannot be split across tp {self.tp_size}")
        if self.mlp_width % self.tp_size:
            raise ValueError(f"MLP width {self.mlp_width} is not divisible by tp {self.tp_size}")
        if self.fault is not None:
            parse_fault(self.fault)

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
    the plan promises is the one the model gets.
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
