"""What the planner answers with: a layout, its memory, its step time, its traffic.

Plain frozen dataclasses with ``as_dict`` for ``--json``: strict JSON values only (no NaN or
infinity: an unknown number is None), bytes as numbers of bytes, times in seconds.

    python -c "from pplab.planner.results import Layout; print(Layout(8, 8, 64, 1, 24,
    'interleaved-1f1b', 3, 'selective', True).describe())"
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from pplab.planner.memory import StageMemory
from pplab.planner.specs import GIB


def json_safe(value: object) -> object:
    """``value`` with tuples as lists and every non-finite float as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class Layout:
    """One way to run the model: the grid, the microbatches, the schedule, the recomputation."""

    pp: int
    tp: int
    dp: int
    microbatch_size: int
    num_microbatches: int  # per pipeline per step: global batch / (dp x microbatch size)
    schedule: str
    num_chunks: int  # V, model chunks per pipeline rank (1 unless interleaved)
    recompute: str
    sequence_parallel: bool

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.pp, self.tp, self.dp)

    def describe(self) -> str:
        """``pp=8 tp=8 dp=64, b=1 m=24, interleaved-1f1b v=3, selective recompute, SP``"""
        chunks = f" v={self.num_chunks}" if self.num_chunks > 1 else ""
        sp = ", SP" if self.sequence_parallel and self.tp > 1 else ""
        return (f"pp={self.pp} tp={self.tp} dp={self.dp}, b={self.microbatch_size} "
                f"m={self.num_microbatches}, {self.schedule}{chunks}, "
                f"{self.recompute} recompute{sp}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class StepTime:
    """Seconds of one training step, and where they go on the busiest pipeline rank.

    ``compute + recompute + tp_comm + bubble = pipeline``; ``pipeline + dp_allreduce = step``.
    ``bubble`` is the busiest rank's idle time, exposed pipeline messages included.
    """

    step: float
    pipeline: float
    compute: float
    recompute: float
    tp_comm: float
    bubble: float
    dp_allreduce: float
    message: float  # one pipeline message, for scale
    note: str

    def as_dict(self) -> dict[str, object]:
        return json_safe({f"{f.name}_s" if f.name != "note" else f.name: getattr(self, f.name)
                          for f in fields(self)})


@dataclass(frozen=True)
class Traffic:
    """Bytes one GPU sends per step, by kind, and the link each kind runs on."""

    tp_bytes: float
    tp_link: str
    pp_bytes: float
    pp_link: str
    dp_bytes: float
    dp_link: str

    def as_dict(self) -> dict[str, object]:
        return json_safe(asdict(self))


@dataclass(frozen=True)
class Candidate:
    """A layout with its estimates. ``time`` is None until the layout has been timed.

    ``bubble_fraction`` is the simulated pipeline's idle share (the lab's definition: idle
    rank-time over ranks x makespan, exposed messages included); ``bubble_closed_form`` the
    schedule's formula for equal stages and free messages (``pplab.formulas.pipeline``), or None.
    ``tflops_per_gpu`` counts executed FLOPs, recomputation included, as Megatron-LM's
    Table 1 does; ``mfu`` counts model FLOPs only (Korthikanti et al. 2022, Sec. 6.3).
    """

    layout: Layout
    memory: tuple[StageMemory, ...]
    memory_limit: float
    lower_bound: float  # seconds no simulation can beat: the busiest rank's work + dp
    traffic: Traffic
    time: StepTime | None = None
    bubble_fraction: float | None = None
    bubble_closed_form: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    tflops_per_gpu: float | None = None
    tokens_per_s: float | None = None

    @property
    def peak_memory(self) -> float:
        return max(stage.total for stage in self.memory)

    @property
    def peak_rank(self) -> int:
        return max(self.memory, key=lambda stage: stage.total).rank

    @property
    def fits(self) -> bool:
        return self.peak_memory <= self.memory_limit

    @property
    def step_s(self) -> float | None:
        return None if self.time is None else self.time.step

    def describe(self) -> str:
        """One line: the layout, its memory against the limit, its step time and MFU."""
        memory = (f"{self.peak_memory / GIB:.1f} GiB {'<=' if self.fits else '>'} "
                  f"{self.memory_limit / GIB:g} GiB")
        if self.time is None:
            return f"{self.layout.describe()}: {memory}"
        return (f"{self.layout.describe()}: {memory}, step {self.time.step:.2f} s, "
                f"bubble {self.bubble_fraction:.1%}, MFU {self.mfu:.1%}")

    def as_dict(self) -> dict[str, object]:
        return json_safe({
            "layout": self.layout.as_dict(),
            "description": self.describe(),
            "fits": self.fits,
            "peak_memory": self.peak_memory,
            "peak_memory_gib": round(self.peak_memory / GIB, 3),
            "peak_rank": self.peak_rank,
            "memory_limit": self.memory_limit,
            "memory": [stage.as_dict() for stage in self.memory],
            "time": None if self.time is None else self.time.as_dict(),
            "lower_bound_s": self.lower_bound,
            "bubble_fraction": self.bubble_fraction,
            "bubble_closed_form": self.bubble_closed_form,
            "traffic": self.traffic.as_dict(),
            "mfu": self.mfu,
            "hfu": self.hfu,
            "tflops_per_gpu": self.tflops_per_gpu,
            "tokens_per_s": self.tokens_per_s,
        })


@dataclass(frozen=True)
class Exclusion:
    """A (pp, tp, dp) grid of the right GPU count that breaks a rule, and which."""

    pp: int
    tp: int
    dp: int
    reason: str

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.pp, self.tp, self.dp)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
