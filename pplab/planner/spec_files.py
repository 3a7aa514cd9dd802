"""Your own model and cluster, from a small TOML or JSON file.

A file holds a ``[model]`` table, a ``[cluster]`` table, a ``global_batch``, or any of them;
each table names every field, or starts from a preset and changes some:

    global_batch = 1536

    [model]                      # or: preset = "gpt3-175b", then any field to change
    name = "my-gpt"
    layers = 48
    hidden = 6144
    heads = 48
    seq_len = 2048
    vocab = 51200
    precision = "bf16"           # bf16, fp16 or fp32; optional: ffn = 24576

    [cluster]
    preset = "dgx-a100-80gb"     # GPUs per node, memory_gib, peak_tflops, intra_node_gbs,
    nodes = 64                   # inter_node_gbs, efficiency: all may be set here

JSON takes the same keys. A mistake is one line naming the file, the table and the key.

    python -c "from pplab.planner import load_spec; print(load_spec('my-plan.toml'))"
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

from pplab.limits import MAX_PLAN_SPEC_BYTES
from pplab.planner.presets import cluster_preset, model_preset
from pplab.planner.specs import ClusterSpec, ModelSpec, check_global_batch


@dataclass(frozen=True)
class PlanSpec:
    """What a spec file says; None for the parts it leaves to the command line."""

    model: ModelSpec | None = None
    cluster: ClusterSpec | None = None
    global_batch: int | None = None


def _read(path: Path) -> dict:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ValueError(f"cannot read spec {path}: {error.strerror or error}") from None
    if size > MAX_PLAN_SPEC_BYTES:
        raise ValueError(f"{path} is {size:,} bytes; a spec file is at most "
                         f"{MAX_PLAN_SPEC_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read spec {path}: {error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON: {error.msg} at line {error.lineno}") from None
    elif path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not TOML: {error}") from None
    else:
        raise ValueError(f"{path}: a spec file ends in .toml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of model, cluster and global_batch")
    return data


def _build(kind, preset_of, table: object, where: str):
    """A ModelSpec or ClusterSpec from one table: a preset and changes, or every field."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table of fields")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(table) - known - {"preset"})
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; known: preset, "
                         f"{', '.join(sorted(known))}")
    values = dict(table)
    preset = values.pop("preset", None)
    try:
        if preset is not None:
            if not isinstance(preset, str):
                raise ValueError(f"preset must be a name, got {preset!r}")
            base = preset_of(preset)
            return replace(base, **values) if values else base
        required = [f.name for f in fields(kind) if f.default is MISSING
                    and f.default_factory is MISSING and f.name not in values]
        if required:
            raise ValueError(f"missing {', '.join(required)} (or start from a preset)")
        return kind(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def load_spec(path: str | Path) -> PlanSpec:
    """Read a spec file (.toml or .json); raise ValueError with one line on any mistake."""
    path = Path(path)
    data = _read(path)
    unknown = sorted(set(data) - {"model", "cluster", "global_batch"})
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; a spec holds model, cluster "
                         f"and global_batch")
    model = cluster = batch = None
    if "model" in data:
        model = _build(ModelSpec, model_preset, data["model"], f"{path} [model]")
    if "cluster" in data:
        cluster = _build(ClusterSpec, cluster_preset, data["cluster"], f"{path} [cluster]")
    if "global_batch" in data:
        try:
            batch = check_global_batch(data["global_batch"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return PlanSpec(model, cluster, batch)
