"""Running several parallel configurations of one model and one batch, and tabulating why.

What it teaches: pipeline, tensor and data parallelism pay for the same training step in
different coins. A pipeline pays in bubbles (ranks idle while the pipe fills and drains) and
moves little data (one activation per cut per microbatch); tensor parallelism has no bubble
but all-reduces an activation four times per layer per microbatch; data parallelism moves
every gradient once per step. Training the *same* model on the *same* global batch under
each configuration, and putting the measured numbers beside the closed forms, shows all three.

Configurations are written ``NAME[:KEY=VALUE,...]`` (``compare_specs``); the table is laid
out by ``compare_table`` and read back by ``pplab.runs.comparisons``.

    pplab compare gpipe:pp=4,m=8 1f1b:pp=4,m=8 pipedream:pp=4,m=8 tp:tp=4 --steps 5

This module imports no torch at import time; ``run_comparison`` starts the engine.
"""

from __future__ import annotations

import json
import operator
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pplab import limits
from pplab.engine.compare_specs import Spec, default_batch, parse_spec
from pplab.engine.compare_table import COLUMNS, split_columns, table_csv
from pplab.engine.request import TrainingRequest, check_request, run_label
from pplab.engine.train_config import TrainConfig
from pplab.formulas import parallel as pf
from pplab.formulas import pipeline as formulas
from pplab.runs.atomic_files import atomic_directory
from pplab.runs.comparisons import COMPARISON_CSV, COMPARISON_JSON
from pplab.runs.run_dirs import strict_json_value
from pplab.schedules.actions import ActionKind
from pplab.timeline.events import EventKind


@dataclass(frozen=True)
class Shared:
    """What every configuration shares: the model, the global batch, the steps."""

    steps: int = 5
    layers: int | None = None
    d_model: int = 64
    heads: int = 4
    d_ff: int | None = None
    seq_len: int = 16
    batch_size: int | None = None
    task: str = "reverse"
    lr: float = 1e-3
    seed: int = 0
    dtype: str = "float32"
    timeout: float = 300.0
    device: str = "cpu"  # cuda: NCCL with a GPU per rank, or gloo when ranks share GPUs


def check_comparison(texts: Sequence[str],
                     shared: Shared) -> list[tuple[Spec, TrainingRequest]]:
    """Each configuration with its checked request, all of one model and one global batch."""
    if not texts:
        raise ValueError("give at least one configuration, e.g. 1f1b:pp=2,m=4")
    if len(texts) > limits.MAX_COMPARE_CONFIGURATIONS:
        raise ValueError(f"{len(texts):,} configurations; one comparison trains at most "
                         f"{limits.MAX_COMPARE_CONFIGURATIONS}")
    specs = [parse_spec(text) for text in texts]
    # "is None", not "or": a 0 given on purpose is refused by the config, not replaced.
    layers = shared.layers if shared.layers is not None \
        else max(4, *(s.pp * (s.v or 1) for s in specs))
    batch = shared.batch_size if shared.batch_size is not None else default_batch(specs)
    checked = []
    for spec in specs:
        try:
            config = TrainConfig(
                schedule=spec.schedule, pp_size=spec.pp, microbatches=spec.m, chunks=spec.v,
                steps=shared.steps, layers=layers, batch_size=batch, seq_len=shared.seq_len,
                d_model=shared.d_model, heads=shared.heads, d_ff=shared.d_ff, task=shared.task,
                lr=shared.lr, seed=shared.seed, dtype=shared.dtype, timeout=shared.timeout,
                tp_size=spec.tp, dp_size=spec.dp, device=shared.device, out="-")
            checked.append((spec, check_request(config)))
        except ValueError as error:
            raise ValueError(f"{spec.text}: {error}") from None
    return checked


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def backward_passes(schedule, stage: int) -> int:
    """How often a microbatch's backward crosses the f operators of ``stage`` (see
    ``pplab.formulas.parallel.tp_allreduce_bytes``): B once; I and W once each, but the first
    stage's I has nothing to do."""
    kinds = {a.kind for _, a in schedule.all_actions() if a.stage == stage}
    if ActionKind.FULL_BACKWARD in kinds:
        return 1
    return ((ActionKind.BACKWARD_INPUT in kinds and stage > 0)
            + (ActionKind.BACKWARD_WEIGHT in kinds))


def formula_bytes(request: TrainingRequest) -> dict[str, int]:
    """Bytes per step by the closed forms: pipeline sends, tp all-reduces, dp all-reduce."""
    model, schedule, config = request.model, request.schedule, request.config
    element = 8 if config.dtype == "float64" else 4
    m, b = schedule.microbatches_per_step, request.microbatch_size
    t, r = config.tp_size, config.dp_size
    return {
        "send": pf.pipeline_send_bytes(schedule.num_stages, m, b, model.seq_len, model.d_model,
                                       t, r, element),
        "tp": sum(pf.tp_allreduce_bytes(layers, m, b, model.seq_len, model.d_model, t, r,
                                        element, backward_passes(schedule, stage))
                  for stage, layers in enumerate(request.layer_split)),
        "dp": pf.dp_allreduce_bytes(request.layer_split, model.d_model, model.d_ff,
                                    model.vocab_size, model.seq_len, t, r, element),
    }


def summarize(spec: Spec, request: TrainingRequest, events, metadata: dict,
              run_name: str) -> dict:
    """One row of the comparison from a measured run; step 0 (warm-up) is left out."""
    from pplab.timeline import metrics

    ranks = range(request.topology.world_size)  # every rank counts, idle or not
    steps = sorted(int(s) for s in events["step"].unique())
    kept = [s for s in steps if s > 0] or steps
    events_kept = events[events["step"].isin(kept)]
    step_seconds = [float(t) for t in metadata["step_seconds"]]
    step_time = _median(step_seconds[1:] or step_seconds)
    if request.schedule.is_async or len(steps) < 2:
        bubble = float(metrics(events_kept, ranks)["bubble_fraction"])
    else:
        per_step = metrics(events, ranks)["per_step"]
        bubble = _median([row["bubble_fraction"] for row in per_step if row["step"] in kept])
    reduce = events_kept[events_kept["kind"] == EventKind.ALLREDUCE]
    allreduce_s = float((reduce["end"] - reduce["start"]).sum()) / (len(ranks) * len(kept))
    moved = {}
    sends = events_kept[events_kept["kind"] == EventKind.SEND]
    moved["send"] = int(sends["bytes"].sum()) // len(kept)
    moved["tp"] = int(reduce[reduce["detail"].str.startswith("tp")]["bytes"].sum()) // len(kept)
    moved["dp"] = int(reduce[reduce["detail"] == "dp grads"]["bytes"].sum()) // len(kept)
    expected = formula_bytes(request)
    per_pp_rank: dict[int, int] = {}
    # CPU peaks are per stage and add up on a rank; a CUDA peak is already the whole rank's,
    # repeated for each of its stages.
    combine = max if metadata["peak_memory_kind"].startswith("cuda") else operator.add
    for stage, peak in metadata["peak_memory_bytes"].items():
        pp_rank = request.schedule.stage_to_rank[int(stage)]
        per_pp_rank[pp_rank] = combine(per_pp_rank.get(pp_rank, 0), int(peak))
    losses = metadata.get("loss") or [float("nan")]
    return {
        "configuration": spec.text,
        "run": run_name,
        "schedule": request.schedule.name,
        "pp": spec.pp, "m": request.schedule.microbatches_per_step, "v": spec.v or 1,
        "tp": spec.tp, "dp": spec.dp, "ranks": request.topology.world_size,
        "microbatch_size": request.microbatch_size,
        "step_time_s": step_time,
        "bubble_fraction": bubble,
        # None where no closed form applies (e.g. zb-h1 with fewer microbatches than stages)
        "bubble_fraction_formula": formulas.closed_form_for(request.schedule).value,
        "allreduce_s_per_step": allreduce_s,
        **split_columns(events, ranks, kept, request.schedule.is_async),
        "bytes_per_step": sum(moved.values()),
        "bytes_per_step_formula": sum(expected.values()),
        "send_bytes_per_step": moved["send"],
        "send_bytes_per_step_formula": expected["send"],
        "tp_bytes_per_step": moved["tp"],
        "tp_bytes_per_step_formula": expected["tp"],
        "dp_bytes_per_step": moved["dp"],
        "dp_bytes_per_step_formula": expected["dp"],
        "peak_activation_mib": max(per_pp_rank.values(), default=0) / 2**20,
        "peak_activation_bytes_per_pp_rank": {str(k): v for k, v in sorted(per_pp_rank.items())},
        "final_loss": float(losses[-1]),
        "steps_measured": kept,
    }


def run_comparison(texts: Sequence[str], shared: Shared, out: str | os.PathLike,
                   description: str = "",
                   progress: Callable[[str], None] | None = None,
                   step_progress: Callable[[int, dict], None] | None = None,
                   ) -> tuple[Path, list[dict]]:
    """Train every configuration and write ``out``: one run dir each plus the table.

    ``progress`` gets a line as each configuration starts; ``step_progress(i, message)``
    each progress message of configuration ``i`` (see ``launch.run_training``).

    Everything is checked before the first process starts. ``out`` appears complete or not
    at all: runs go into a hidden temporary directory beside it, renamed at the end.
    """
    from pplab.engine.launch import RUN_DIR_BYTES, RUN_DIR_BYTES_PER_EVENT, run_training
    from pplab.engine.request import estimated_event_rows
    from pplab.runs.output_paths import check_writable

    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; choose a new comparison directory")
    checked = check_comparison(texts, shared)
    need = sum(RUN_DIR_BYTES
               + RUN_DIR_BYTES_PER_EVENT * estimated_event_rows(request, request.num_steps)
               for _, request in checked)
    check_writable(out, "--out", need_bytes=need, folder=True)
    with atomic_directory(out) as tmp:
        rows = []
        for i, (spec, request) in enumerate(checked):
            name = f"{i + 1}-{run_label(request)}"
            if progress is not None:
                progress(f"[{i + 1}/{len(checked)}] {spec.text}: "
                         f"{request.topology.world_size} ranks, {request.num_steps} steps")
            relay = None if step_progress is None else (
                lambda message, i=i: step_progress(i, message))
            # The request checked above, saved in its member folder: checked once, not again.
            saved = replace(request, config=replace(request.config, out=str(tmp / name)))
            result = run_training(saved, tmp / name, relay)
            rows.append(summarize(spec, request, result.events, result.metadata, name))
        first = checked[0][1]
        document = {
            "description": description or default_description(rows),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "shared": asdict(shared) | {"layers": first.model.n_layers,
                                        "batch_size": first.batch_size},
            "columns": {name: unit for name, unit in COLUMNS},
            "bytes_convention": "payload bytes each rank hands to a send or all-reduce, "
                                "summed over ranks; see pplab.formulas.parallel",
            "rows": rows,
        }
        (tmp / COMPARISON_JSON).write_text(
            json.dumps(strict_json_value(document), indent=2, allow_nan=False) + "\n")
        (tmp / COMPARISON_CSV).write_text(table_csv(rows))
    return out, rows


def default_description(rows: Sequence[dict]) -> str:
    configs = ", ".join(row["configuration"] for row in rows)
    text = (f"The same toy GPT and global batch under {configs}: pipelines pay in bubbles, "
            f"tensor parallelism in all-reduces, data parallelism in gradient traffic.")
    return text + "".join(f" {note}" for note in dict.fromkeys(
        ASYNC_NOTES[row["schedule"]] for row in rows if row.get("schedule") in ASYNC_NOTES))


# Why an asynchronous run's loss differs, said where its loss is shown: not staleness alone.
ASYNC_NOTES = {
    "pipedream": "PipeDream updates every stage after every microbatch: m times as many "
                 "optimizer steps as a synchronous run, each on one microbatch and on stale "
                 "weights, so its loss differs for both reasons; its bubble is the whole run's "
                 "(one fill and drain, no flush), the others' one step's. "
                 "benchmarks/staleness.py compares at equal updates.",
    "pipedream-2bw": "PipeDream-2BW makes as many updates as a synchronous run, each on the "
                     "whole batch, but computes them on weights one update old; its bubble is "
                     "the whole run's (no flush).",
}
