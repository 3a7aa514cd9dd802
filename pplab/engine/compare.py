"""Running several parallel configurations of one model and one batch, and tabulating why.

What it teaches: pipeline, tensor and data parallelism pay for the same training step in
different coins. A pipeline pays in bubbles (ranks idle while the pipe fills and drains) and
moves little data (one activation per cut per microbatch); tensor parallelism has no bubble
but all-reduces an activation four times per layer per microbatch; data parallelism moves
every gradient once per step. Training the *same* model on the *same* global batch under
each configuration, and putting the measured numbers beside the closed forms, shows all three.

A configuration is written ``NAME[:KEY=VALUE,...]``:

* ``NAME`` is a schedule from ``pplab schedules`` (gpipe, 1f1b, interleaved-1f1b, zb-h1,
  pipedream, pipedream-2bw, naive), or ``tp`` / ``dp`` for no pipeline at all (one stage:
  the whole model split over ``tp`` ranks, or replicated on ``dp`` ranks; default 2 each).
* ``KEY`` is ``pp`` (pipeline ranks, default 2; 1 for tp and dp), ``m`` (microbatches per
  step, default pp; 1 for tp and dp), ``v`` (model chunks per rank, interleaved only), ``tp``
  (tensor-parallel ranks per stage) or ``dp`` (data-parallel replicas).

    pplab compare gpipe:pp=4,m=8 1f1b:pp=4,m=8 pipedream:pp=4,m=8 tp:tp=4 --steps 5
    python -c "from pplab.engine.compare import parse_spec; print(parse_spec('1f1b:pp=2,tp=2'))"

This module imports no torch at import time; ``run_comparison`` starts the engine.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pplab import formulas
from pplab import parallel_formulas as pf
from pplab.atomic_files import atomic_directory

NO_PIPELINE = {"tp": "tp", "dp": "dp"}
NO_PIPELINE_SCHEDULE = "gpipe"  # with one stage it is just F then B per microbatch
KEYS = {"pp": "pipeline ranks", "m": "microbatches per step", "v": "chunks per rank",
        "tp": "tensor-parallel ranks", "dp": "data-parallel replicas"}
MIN_DEFAULT_BATCH = 16
COMPARISON_JSON = "comparison.json"
COMPARISON_CSV = "comparison.csv"

# Columns of the table, with the unit and whether measured or from a closed form.
COLUMNS = (
    ("configuration", ""),
    ("ranks", ""),
    ("step_time_s", "measured, median"),
    ("bubble_fraction", "measured, median"),
    ("bubble_fraction_formula", "closed form"),
    ("allreduce_s_per_step", "measured, mean per rank"),
    ("bytes_per_step", "measured, all ranks"),
    ("bytes_per_step_formula", "closed form"),
    ("peak_activation_mib", "measured, max over ranks"),
    ("final_loss", "measured"),
)


@dataclass(frozen=True)
class Spec:
    """One configuration as written on the command line, resolved to sizes."""

    text: str
    schedule: str
    pp: int
    m: int
    v: int | None
    tp: int
    dp: int

    @property
    def world_size(self) -> int:
        return self.pp * self.tp * self.dp

    @property
    def slug(self) -> str:
        """A directory name: ``1f1b-pp4-m8`` or ``tp-tp4``."""
        head = self.text.split(":", 1)[0]
        parts = [head, f"pp{self.pp}", f"m{self.m}"]
        if self.v:
            parts.append(f"v{self.v}")
        for key in ("tp", "dp"):
            if getattr(self, key) > 1:
                parts.append(f"{key}{getattr(self, key)}")
        if head in NO_PIPELINE:
            parts = [p for p in parts if p not in ("pp1", "m1")]
        return "-".join(parts)


def parse_spec(text: str) -> Spec:
    """Read ``NAME[:KEY=VALUE,...]``; raise ValueError naming what is wrong."""
    from pplab.schedules import SCHEDULES

    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in SCHEDULES and name not in NO_PIPELINE:
        known = ", ".join(sorted(SCHEDULES) + sorted(NO_PIPELINE))
        raise ValueError(f"unknown configuration {name!r} in {text!r}; choose one of {known}")
    values: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in KEYS:
            raise ValueError(f"cannot read {item!r} in {text!r}: use KEY=VALUE with KEY one of "
                             f"{', '.join(KEYS)}")
        if key in values:
            raise ValueError(f"{key} is given twice in {text!r}")
        try:
            values[key] = int(value)
        except ValueError:
            raise ValueError(f"{key}={value.strip()} in {text!r} is not a whole number") from None
        if values[key] < 1:
            raise ValueError(f"{key} must be at least 1 in {text!r}, got {values[key]}")
    if name in NO_PIPELINE:
        values.setdefault(NO_PIPELINE[name], 2)
        pp = values.get("pp", 1)
        schedule = NO_PIPELINE_SCHEDULE
    else:
        pp = values.get("pp", 2)
        schedule = name
    return Spec(text.strip(), schedule, pp, values.get("m", pp if name not in NO_PIPELINE else 1),
                values.get("v"), values.get("tp", 1), values.get("dp", 1))


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


def default_batch(specs: Sequence[Spec]) -> int:
    """Smallest multiple of every configuration's m x dp that is at least 16 rows."""
    unit = math.lcm(*(s.m * s.dp for s in specs))
    return unit * max(1, -(-MIN_DEFAULT_BATCH // unit))


def train_configs(specs: Sequence[Spec], shared: Shared) -> list:
    """One TrainConfig per spec, all of one model and one global batch, checked up front."""
    from .config import TrainConfig
    from .launch import make_plan

    if not specs:
        raise ValueError("give at least one configuration, e.g. 1f1b:pp=2,m=4")
    layers = shared.layers or max(4, *(s.pp * (s.v or 1) for s in specs))
    batch = shared.batch_size or default_batch(specs)
    configs = []
    for spec in specs:
        try:
            config = TrainConfig(
                schedule=spec.schedule, pp_size=spec.pp, microbatches=spec.m, chunks=spec.v,
                steps=shared.steps, layers=layers, batch_size=batch, seq_len=shared.seq_len,
                d_model=shared.d_model, heads=shared.heads, d_ff=shared.d_ff, task=shared.task,
                lr=shared.lr, seed=shared.seed, dtype=shared.dtype, timeout=shared.timeout,
                tp_size=spec.tp, dp_size=spec.dp, out="-")
            make_plan(config)
        except ValueError as error:
            raise ValueError(f"{spec.text}: {error}") from None
        configs.append(config)
    return configs


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def backward_passes(schedule, stage: int) -> int:
    """How often a microbatch's backward crosses the f operators of ``stage`` (see
    ``pplab.parallel_formulas.tp_allreduce_bytes``): B once; I and W once each, but the first
    stage's I has nothing to do."""
    kinds = {a.kind for a in schedule.actions[schedule.stage_to_rank[stage]] if a.stage == stage}
    if "B" in kinds:
        return 1
    return ("I" in kinds and stage > 0) + ("W" in kinds)


def formula_bytes(plan) -> dict[str, int]:
    model, schedule, config = plan.model, plan.schedule, plan.config
    element = 8 if config.dtype == "float64" else 4
    m, b = schedule.microbatches_per_step, plan.microbatch_size
    t, r = config.tp_size, config.dp_size
    return {
        "send": pf.pipeline_send_bytes(schedule.num_stages, m, b, model.seq_len, model.d_model,
                                       t, r, element),
        "tp": sum(pf.tp_allreduce_bytes(layers, m, b, model.seq_len, model.d_model, t, r,
                                        element, backward_passes(schedule, stage))
                  for stage, layers in enumerate(plan.layer_split)),
        "dp": pf.dp_allreduce_bytes(plan.layer_split, model.d_model, model.d_ff,
                                    model.vocab_size, model.seq_len, t, r, element),
    }


def _bubble_formula(plan) -> float | None:
    schedule = plan.schedule
    chunks = schedule.num_chunks
    try:
        return formulas.bubble_fraction(schedule.name, schedule.pp_size,
                                        schedule.microbatches_per_step, chunks,
                                        num_steps=schedule.num_steps)
    except ValueError:
        return None  # e.g. zb-h1 with fewer microbatches than stages: no closed form


def summarize(spec: Spec, plan, events, metadata: dict, run_name: str) -> dict:
    """One row of the comparison from a measured run; step 0 (warm-up) is left out."""
    from pplab.timeline import metrics

    steps = sorted(int(s) for s in events["step"].unique())
    kept = [s for s in steps if s > 0] or steps
    events_kept = events[events["step"].isin(kept)]
    step_seconds = [float(t) for t in metadata["step_seconds"]]
    step_time = _median(step_seconds[1:] or step_seconds)
    if plan.schedule.is_async or len(steps) < 2:
        bubble = float(metrics(events_kept)["bubble_fraction"])
    else:
        per_step = metrics(events)["per_step"]
        bubble = _median([row["bubble_fraction"] for row in per_step if row["step"] in kept])
    reduce = events_kept[events_kept["kind"] == "allreduce"]
    ranks = int(events["rank"].nunique())
    allreduce_s = float((reduce["end"] - reduce["start"]).sum()) / (ranks * len(kept))
    moved = {}
    sends = events_kept[events_kept["kind"] == "send"]
    moved["send"] = int(sends["bytes"].sum()) // len(kept)
    moved["tp"] = int(reduce[reduce["detail"].str.startswith("tp")]["bytes"].sum()) // len(kept)
    moved["dp"] = int(reduce[reduce["detail"] == "dp grads"]["bytes"].sum()) // len(kept)
    expected = formula_bytes(plan)
    per_rank: dict[int, int] = {}
    # CPU peaks are per stage and add up on a rank; a CUDA peak is already the whole rank's,
    # repeated for each of its stages.
    combine = max if metadata["peak_memory_kind"].startswith("cuda") else operator.add
    for stage, peak in metadata["peak_memory_bytes"].items():
        rank = plan.schedule.stage_to_rank[int(stage)]
        per_rank[rank] = combine(per_rank.get(rank, 0), int(peak))
    losses = metadata.get("loss") or [float("nan")]
    return {
        "configuration": spec.text,
        "run": run_name,
        "schedule": plan.schedule.name,
        "pp": spec.pp, "m": plan.schedule.microbatches_per_step, "v": spec.v or 1,
        "tp": spec.tp, "dp": spec.dp, "ranks": plan.world_size,
        "microbatch_size": plan.microbatch_size,
        "step_time_s": step_time,
        "bubble_fraction": bubble,
        "bubble_fraction_formula": _bubble_formula(plan),
        "allreduce_s_per_step": allreduce_s,
        "bytes_per_step": sum(moved.values()),
        "bytes_per_step_formula": sum(expected.values()),
        "send_bytes_per_step": moved["send"],
        "send_bytes_per_step_formula": expected["send"],
        "tp_bytes_per_step": moved["tp"],
        "tp_bytes_per_step_formula": expected["tp"],
        "dp_bytes_per_step": moved["dp"],
        "dp_bytes_per_step_formula": expected["dp"],
        "peak_activation_mib": max(per_rank.values(), default=0) / 2**20,
        "peak_activation_bytes_per_pp_rank": {str(k): v for k, v in sorted(per_rank.items())},
        "final_loss": float(losses[-1]),
        "steps_measured": kept,
    }


def run_comparison(texts: Sequence[str], shared: Shared, out: str | os.PathLike,
                   description: str = "",
                   progress: Callable[[str], None] | None = None) -> tuple[Path, list[dict]]:
    """Train every configuration and write ``out``: one run dir each plus the table.

    Everything is checked before the first process starts. ``out`` appears complete or not
    at all: runs go into a hidden temporary directory beside it, renamed at the end.
    """
    from .launch import make_plan, run_training

    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; choose a new comparison directory")
    specs = [parse_spec(text) for text in texts]
    configs = train_configs(specs, shared)
    names = [f"{i + 1}-{spec.slug}" for i, spec in enumerate(specs)]
    with atomic_directory(out) as tmp:
        rows = []
        for i, (spec, config, name) in enumerate(zip(specs, configs, names, strict=True)):
            if progress is not None:
                progress(f"[{i + 1}/{len(specs)}] {spec.text}: {spec.world_size} ranks, "
                         f"{config.steps} steps")
            result = run_training(replace(config, out=str(tmp / name)))
            rows.append(summarize(spec, make_plan(config), result.events, result.metadata,
                                  name))
        document = {
            "description": description or default_description(rows),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "shared": asdict(shared) | {"layers": configs[0].layers,
                                        "batch_size": configs[0].batch_size},
            "columns": {name: unit for name, unit in COLUMNS},
            "bytes_convention": "payload bytes each rank hands to a send or all-reduce, "
                                "summed over ranks; see pplab.parallel_formulas",
            "rows": rows,
        }
        (tmp / COMPARISON_JSON).write_text(json.dumps(document, indent=2) + "\n")
        (tmp / COMPARISON_CSV).write_text(table_csv(rows))
    return out, rows


def default_description(rows: Sequence[dict]) -> str:
    configs = ", ".join(row["configuration"] for row in rows)
    return (f"The same toy GPT and global batch under {configs}: pipelines pay in bubbles, "
            f"tensor parallelism in all-reduces, data parallelism in gradient traffic.")


def _flat(row: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in row.items()}


def table_csv(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(_flat(row) for row in rows)
    return buffer.getvalue()


def _cell(name: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if "bytes" in name:
        return f"{value / 2**10:,.0f}"
    if name == "step_time_s" or name == "allreduce_s_per_step":
        return f"{value * 1e3:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


HEADERS = {
    "configuration": "configuration", "ranks": "ranks", "step_time_s": "step ms",
    "bubble_fraction": "bubble", "bubble_fraction_formula": "bubble f.",
    "allreduce_s_per_step": "allreduce ms", "bytes_per_step": "KiB/step",
    "bytes_per_step_formula": "KiB/step f.", "peak_activation_mib": "act MiB",
    "final_loss": "loss",
}


def format_table(rows: Sequence[dict]) -> str:
    """The table as text; ``f.`` columns are closed forms, the others measured."""
    names = [name for name, _ in COLUMNS]
    cells = [[HEADERS[n] for n in names]] + [[_cell(n, row[n]) for n in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        for line in cells
    ]
    final = rows[0]["steps_measured"] if rows else []
    legend = ("measured: step ms (median), bubble (median idle share), allreduce ms (per rank), "
              "KiB/step (sends + all-reduces, all ranks), act MiB (peak saved activations, "
              "busiest rank), loss (last step); f. = closed form")
    if final:
        legend += f"; steps {final[0]}..{final[-1]} (step 0 is warm-up)"
    return "\n".join(lines + ["", legend])


def load_comparison(directory: str | os.PathLike) -> dict:
    """Read comparison.json; raise ValueError with a one-line reason if it is not one."""
    path = Path(directory) / COMPARISON_JSON
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a comparison: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise ValueError(f"{path} has no list of rows")
    return document

