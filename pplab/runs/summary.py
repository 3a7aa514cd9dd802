"""What a recorded run says about itself: its meta.json read once, into one small dataclass.

A run directory's ``meta.json`` is written by the engine (or by ``pplab simulate --save``)
and may come from an older pplab or from somewhere else entirely, so every field is read
defensively: a missing or odd value becomes "unknown", never an exception. Pages, the CLI
and notebooks read a run's schedule, sizes, parallel degrees, loss and memory from here.

    python -c "from pplab.runs.run_dirs import load_run; from pplab.runs.summary import summarize; \
print(summarize(load_run('data/comparisons/pp4-vs-tp4-cpu/5-1f1b-p2m8-tp2')).label)"
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pplab.limits import MAX_WORLD_SIZE
from pplab.runs.run_dirs import Run
from pplab.topology import Topology


def _whole(value: object) -> int | None:
    """A positive whole number, or None (JSON booleans are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value == int(value) and value >= 1 else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class RunSummary:
    """A run's schedule, sizes, parallel degrees, loss per step and peak memory."""

    schedule: str  # the family's name, or the CSV file's name for a CSV-trained run
    pp_size: int | None  # pipeline depth P (ranks of one pipeline); None if meta.json omits it
    num_microbatches: int | None
    num_chunks: int
    tp_size: int
    dp_size: int
    is_async: bool
    from_csv: bool  # trained from a schedule CSV (`pplab train --csv FILE`)
    device: str
    time_unit: str
    losses: tuple[float, ...]  # training loss after each step, in step order
    memory: dict[int, float] = field(default_factory=dict)  # peak bytes per stage or rank
    memory_kind: str = ""  # what was measured, in the engine's words
    steps: tuple[int, ...] = ()  # the step numbers the events hold, in order

    @property
    def memory_per(self) -> str:
        """"stage" when the peaks are per model stage, else "rank"."""
        return "stage" if "stage" in self.memory_kind else "rank"

    @property
    def is_pipelined(self) -> bool:
        return (self.pp_size or 1) > 1

    @property
    def topology(self) -> Topology:
        """Where each global rank sits: (pp, dp, tp) coordinates, Megatron order.

        A grid no run can have (a foreign meta.json claiming a million ranks) is not believed:
        the run is then read as one rank per process, as its events name them.
        """
        try:
            return Topology(self.pp_size or 1, self.tp_size, self.dp_size)
        except ValueError:
            return Topology(1)

    @property
    def world_size(self) -> int:
        return self.topology.world_size

    def ranks_of(self, events: pd.DataFrame) -> list[int]:
        """Every rank of the run, idle ones included: 0..world_size-1 when meta.json's grid
        holds every rank the events name, else the ranks the events name."""
        seen = sorted(int(r) for r in events["rank"].unique())
        world = self.world_size
        if world <= MAX_WORLD_SIZE and (not seen or seen[-1] < world):
            return list(range(world))
        return seen

    @property
    def label(self) -> str:
        """One line naming what the run is: ``1f1b p=4 m=8 · tp=2 · cpu``, or ``tp=4`` for a
        run with no pipeline (its schedule is then only F then B, nothing to name)."""
        degrees = [f"{name}={size}" for name, size in (("tp", self.tp_size), ("dp", self.dp_size))
                   if size > 1]
        if not self.is_pipelined and degrees:
            parts = [" ".join(degrees + ([f"m={self.num_microbatches}"]
                                         if (self.num_microbatches or 1) > 1 else []))]
        else:
            sizes = [f"{short}={value}" for short, value in
                     (("p", self.pp_size), ("m", self.num_microbatches),
                      ("v", self.num_chunks if self.num_chunks > 1 else None)) if value]
            name = f"{self.schedule} (CSV)" if self.from_csv else self.schedule
            parts = [" ".join([name, *sizes]), *degrees]
        if self.device:
            parts.append(self.device)
        return " · ".join(parts)


def summarize(run: Run) -> RunSummary:
    """Read what ``run``'s metadata (and its events' step numbers) say; never raises."""
    meta = run.metadata
    schedule = meta.get("schedule") if isinstance(meta.get("schedule"), dict) else {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    loss = meta.get("loss") if isinstance(meta.get("loss"), list) else []
    memory = meta.get("peak_memory_bytes")
    memory = memory if isinstance(memory, dict) else {}
    steps = sorted(int(s) for s in run.events["step"].unique()) if len(run.events) else []
    return RunSummary(
        schedule=str(schedule.get("name") or "?"),
        pp_size=_whole(schedule.get("pp_size")) or _whole(meta.get("pp_size")),
        num_microbatches=_whole(schedule.get("num_microbatches")),
        num_chunks=_whole(schedule.get("num_chunks")) or 1,
        tp_size=_whole(meta.get("tp_size")) or 1,
        dp_size=_whole(meta.get("dp_size")) or 1,
        is_async=schedule.get("is_async") is True,
        from_csv=bool(config.get("csv")),
        device=str(config.get("device") or ""),
        time_unit=str(meta.get("time_unit") or "s"),
        losses=tuple(x for x in map(_number, loss) if x is not None),
        memory={int(k): float(v) for k, v in memory.items()
                if str(k).lstrip("-").isdigit() and _number(v) is not None},
        memory_kind=str(meta.get("peak_memory_kind") or ""),
        steps=tuple(steps),
    )
