"""Activation memory per stage: what a measured run held, beside what 1F1B's order says.

What it teaches: under 1F1B stage i starts p - 1 - i warm-up forwards and one more before
its first backward, so at its peak it holds min(p - i, m) microbatches' activations
(Narayanan et al., ICML 2021, arXiv:2006.09503; Megatron-LM, SC 2021, arXiv:2104.04473,
Sec. 2.2.1): stage 0 holds the most, the last stage one, even when every stage holds the same
layers. The engine counts, on CPU, every tensor autograd saves in a stage's forward until its
backward frees it, and keeps each stage's peak in ``meta.json`` (``peak_memory_bytes``,
``peak_memory_kind``); the events say how many microbatches each stage held at once. Sharing
cores changes when things run, not what a stage saves, so a run with more ranks than cores
measures memory as well as any.

    python -c "from pplab.teaching.stage_memory import *; from pplab.runs.run_dirs import \
    load_run; \
print(measured_memory(load_run('data/runs/1f1b-p4m8')))"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pplab.formulas.pipeline import peak_activations as formula_peaks
from pplab.runs.run_dirs import Run
from pplab.timeline import peak_activations as measured_peaks

SAVED_ACTIVATIONS = "saved activations"  # how peak_memory_kind begins for CPU runs
MIB = 2**20


@dataclass(frozen=True)
class MeasuredMemory:
    """One run's activation memory per stage, measured, with the closed form's count."""

    run: str
    schedule: str
    pp_size: int
    num_microbatches: int
    layer_split: tuple[int, ...]
    peak_bytes: tuple[int, ...]  # measured: saved activations at the stage's peak
    held: tuple[int, ...]  # measured: most microbatches in flight at once (from events)
    formula_held: tuple[int, ...]  # closed form for the run's schedule, p and m
    kind: str
    shape: tuple  # model sizes and microbatch size: what one microbatch saves depends on them

    @property
    def bytes_per_microbatch(self) -> tuple[float, ...]:
        """Measured peak over measured microbatches held: one microbatch's activations."""
        return tuple(b / max(h, 1) for b, h in zip(self.peak_bytes, self.held, strict=True))


def measured_memory(run: Run) -> MeasuredMemory:
    """Per-stage activation memory of a measured pipeline run with one stage per rank.

    ValueError when the run did not count saved activations (a GPU run records allocator
    peaks per rank instead) or is not such a pipeline."""
    meta = run.metadata
    kind = str(meta.get("peak_memory_kind", ""))
    if not kind.startswith(SAVED_ACTIVATIONS):
        raise ValueError(f"{Path(run.path).name} records {kind or 'no memory'}, not the saved "
                         f"activations of each stage (a CPU run with recording on does)")
    schedule = meta.get("schedule", {})
    name, p = str(schedule.get("name", "")), int(meta.get("pp_size", 0))
    m = int(schedule.get("num_microbatches", 0))
    if schedule.get("num_chunks", 1) != 1 or meta.get("tp_size", 1) != 1 \
            or meta.get("dp_size", 1) != 1 or p < 1 or m < 1:
        raise ValueError(f"{Path(run.path).name} is not a pipeline of one stage per rank")
    peaks = meta.get("peak_memory_bytes", {})
    if sorted(peaks, key=int) != [str(s) for s in range(p)]:
        raise ValueError(f"{Path(run.path).name} has no memory peak for every one of its "
                         f"{p} stages")
    held = measured_peaks(run.events[run.events["step"] >= 0])
    return MeasuredMemory(
        run=Path(run.path).name, schedule=name, pp_size=p, num_microbatches=m,
        layer_split=tuple(int(n) for n in meta["layer_split"]),
        peak_bytes=tuple(int(peaks[str(s)]) for s in range(p)),
        held=tuple(int(held.get(s, 0)) for s in range(p)),
        formula_held=tuple(formula_peaks(name, p, m)[s] for s in range(p)), kind=kind,
        shape=(tuple(sorted(meta.get("model", {}).items())), meta.get("microbatch_size")))


def formula_bytes(memory: MeasuredMemory, reference: MeasuredMemory) -> list[float]:
    """The closed form's peak per stage of ``memory``'s run: microbatches held (closed form)
    times one microbatch's activations on that stage as ``reference`` measured them (a GPipe
    run of the same model holds all m at once, so its peak over m is one microbatch's).

    The two runs are measured separately, so the comparison can fail. ValueError when the
    reference is of another model, microbatch or split."""
    if (reference.shape, reference.layer_split) != (memory.shape, memory.layer_split):
        raise ValueError(f"{reference.run} is not the model, microbatch and split of "
                         f"{memory.run}")
    return [held * one for held, one in zip(memory.formula_held,
                                            reference.bytes_per_microbatch, strict=True)]


@dataclass(frozen=True)
class ActivationBytes:
    """One microbatch's saved activations: per layer, plus what the first and last add."""

    per_layer: float
    first_extra: float
    last_extra: float

    def per_microbatch(self, split: Sequence[int]) -> list[float]:
        last = len(split) - 1
        return [max(n * self.per_layer + (self.first_extra if s == 0 else 0.0)
                    + (self.last_extra if s == last else 0.0), 0.0)
                for s, n in enumerate(split)]

    def peaks(self, split: Sequence[int], num_microbatches: int,
              schedule: str = "1f1b") -> list[float]:
        """Each stage's predicted peak: microbatches held (the schedule's closed form) times
        what one microbatch saves there."""
        held = formula_peaks(schedule, len(split), num_microbatches)
        return [held[s] * b for s, b in enumerate(self.per_microbatch(split))]


def fit_activation_bytes(memory: MeasuredMemory) -> ActivationBytes:
    """Per-layer bytes and the end stages' extras from a run's measured bytes per microbatch,
    by least squares as ``pplab.calibration`` fits compute (three stages or more; with fewer
    the first stage's extra is taken as nothing)."""
    split, values = memory.layer_split, memory.bytes_per_microbatch
    last = len(split) - 1
    if len(split) >= 3:
        matrix = np.array([[n, float(s == 0), float(s == last)] for s, n in enumerate(split)])
        (a, e, h), *_ = np.linalg.lstsq(matrix, np.array(values), rcond=None)
        return ActivationBytes(float(a), float(e), float(h))
    if len(split) == 2:
        a = values[0] / split[0]
        return ActivationBytes(a, 0.0, values[1] - split[1] * a)
    return ActivationBytes(values[0] / split[0], 0.0, 0.0)
