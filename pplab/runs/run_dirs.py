"""Run directories: an Event table and its metadata, saved whole and read back with suspicion.

A run directory holds ``events.parquet`` (the Event table of ``pplab.timeline``) and
``meta.json`` (schedule, configuration, hardware, losses...). It is written atomically, so it
is complete or absent. It is read as untrusted input: the lab lists whatever sits in the runs
folder, so a damaged, foreign, enormous or linked folder becomes one line saying why, and
never stops the good runs from listing.

``meta.json`` carries ``schema_version``. A run from an older pplab is upgraded on reading; a
run from a newer one is refused with the version it needs. An Event table saved before the
table carried each rank's (pp, tp, dp) coordinate gets it on reading, from meta.json's grid.

    python -c "from pplab.runs.run_dirs import list_runs; print(list_runs('data/runs')[1])"
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pplab import limits
from pplab.runs.atomic_files import atomic_directory, write_text_atomic
from pplab.timeline import COORDINATE_COLUMNS, EVENT_COLUMNS, chrome_trace
from pplab.topology import Topology

EVENTS_FILE = "events.parquet"
META_FILE = "meta.json"
# 1: the words of pp_size / num_stages / num_chunks and the schedule's CSV text (pplab 0.2).
# Runs without the key are version 0 (pplab 0.1), which named the depth "num_ranks".
SCHEMA_VERSION = 1
_CACHE_SIZE = 64


class RunError(ValueError):
    """A run directory that cannot be read; the message says why in one line."""


@dataclass(frozen=True)
class Run:
    path: Path
    events: pd.DataFrame
    metadata: dict


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy and pandas scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON")


def strict_json_value(value: object) -> object:
    """``value`` with every NaN or infinity replaced by None, so JSON readers everywhere agree
    (a diverged loss is recorded as null, not as the non-standard NaN)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Mapping):
        return {key: strict_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(item) for item in value]
    return value


def save_run(directory: str | os.PathLike, events: pd.DataFrame, metadata: Mapping) -> Path:
    """Write ``events.parquet`` and ``meta.json`` into a new ``directory``, atomically.

    Both files are written into a hidden temporary directory beside the target, which is
    then renamed into place: a run directory is complete or absent, never half written.
    """
    directory = Path(directory)
    if directory.exists():
        raise ValueError(f"{directory} already exists; choose a new run directory")
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the columns {missing}")
    try:
        plain = json.loads(json.dumps(dict(metadata), default=_json_default))
        meta_text = json.dumps({**strict_json_value(plain), "schema_version": SCHEMA_VERSION},
                               indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"run metadata cannot be written as JSON: {error}") from None
    with atomic_directory(directory) as tmp:
        table = events[list(EVENT_COLUMNS)].astype(EVENT_COLUMNS).reset_index(drop=True)
        table.to_parquet(tmp / EVENTS_FILE, index=False)
        (tmp / META_FILE).write_text(meta_text + "\n")
    return directory


def _regular_file(directory: Path, name: str) -> Path:
    path = directory / name
    if path.is_symlink():
        raise RunError(f"{directory} is not a run: {name} is a symbolic link, which pplab "
                       f"does not follow")
    if not path.is_file():
        raise RunError(f"{directory} is not a run: {name} is missing")
    return path


def _read_meta(path: Path) -> dict:
    size = path.stat().st_size
    if size > limits.MAX_META_BYTES:
        raise RunError(f"{path} is {size:,} bytes; a run's metadata is at most "
                       f"{limits.MAX_META_BYTES:,} (pplab.limits)")
    try:
        metadata = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path} is not valid JSON: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise RunError(f"{path} nests too deeply to be run metadata") from None
    if not isinstance(metadata, dict):
        raise RunError(f"{path} holds a {type(metadata).__name__}, not a JSON object")
    return upgrade_metadata(metadata, path)


def upgrade_metadata(metadata: dict, path: Path | str = "meta.json") -> dict:
    """Bring metadata of an older schema to the current one; refuse a newer schema."""
    version = metadata.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RunError(f"{path} has schema_version {version!r}, not a whole number")
    if version > SCHEMA_VERSION:
        raise RunError(f"{path} was written by a newer pplab (run schema {version}); this "
                       f"pplab reads schemas up to {SCHEMA_VERSION}: upgrade pplab to open it")
    schedule = metadata.get("schedule")
    if version == 0 and isinstance(schedule, dict) and "pp_size" not in schedule:
        # pplab 0.1 wrote the depth as num_ranks (engine) or as num_stages (simulator).
        depth = schedule.get("num_ranks", schedule.get("num_stages"))
        chunks = schedule.get("num_chunks") or 1
        if isinstance(depth, int) and isinstance(chunks, int):
            upgraded = {k: v for k, v in schedule.items() if k != "num_ranks"}
            upgraded.update(pp_size=depth, num_stages=depth * chunks)
            metadata = {**metadata, "schedule": upgraded}
    return {**metadata, "schema_version": SCHEMA_VERSION}


def _read_events(path: Path, metadata: dict) -> pd.DataFrame:
    size = path.stat().st_size
    if size > limits.MAX_EVENTS_BYTES:
        raise RunError(f"{path} is {size:,} bytes; pplab reads event tables of at most "
                       f"{limits.MAX_EVENTS_BYTES:,} (pplab.limits)")
    try:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).metadata.num_rows  # the footer alone: cheap to check first
        if rows > limits.MAX_EVENT_ROWS:
            raise RunError(f"{path} holds {rows:,} events; pplab reads at most "
                           f"{limits.MAX_EVENT_ROWS:,} (pplab.limits)")
        events = pd.read_parquet(path)
    except RunError:
        raise
    except Exception as error:  # pyarrow raises many types for a damaged file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunError(f"{path} cannot be read as Parquet: {reason}") from None
    # saved before the table carried the coordinates: all three absent, derived below
    derived = not any(c in events.columns for c in COORDINATE_COLUMNS)
    missing = [c for c in EVENT_COLUMNS
               if c not in events.columns and not (derived and c in COORDINATE_COLUMNS)]
    if missing:
        raise RunError(f"{path} is not an Event table: columns {missing} are missing")
    try:
        if derived:
            events = with_coordinates(events, metadata)
        events = events[list(EVENT_COLUMNS)].astype(EVENT_COLUMNS)
    except (TypeError, ValueError, OverflowError) as error:
        raise RunError(f"{path} has columns of the wrong type: {error}") from None
    _check_events(path, events, metadata)
    return events


def grid_of(metadata: Mapping) -> Topology | None:
    """The pp x tp x dp grid meta.json names, or None when it names none pplab can hold."""
    schedule = metadata.get("schedule") if isinstance(metadata.get("schedule"), dict) else {}

    def size(value: object) -> int | None:
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return value if whole else None

    try:
        return Topology(size(schedule.get("pp_size")) or size(metadata.get("pp_size")) or 1,
                        size(metadata.get("tp_size")) or 1, size(metadata.get("dp_size")) or 1)
    except ValueError:
        return None


def with_coordinates(events: pd.DataFrame, metadata: Mapping) -> pd.DataFrame:
    """``events`` with the pp_rank, tp_rank and dp_rank of each global rank, by the rule the
    engine records them with (``Topology.coords``) on meta.json's grid.

    For a table saved before the Event table carried them. Where the grid does not hold
    every rank the events name (a simulated or foreign run), every rank is read as a
    pipeline rank, as the simulator writes them: (rank, 0, 0).
    """
    ranks = events["rank"].to_numpy().astype(np.int64)
    seen = np.unique(ranks)
    grid = grid_of(metadata)
    if grid is None or (len(seen) and (seen[0] < 0 or seen[-1] >= grid.world_size)):
        grid = None
    coords = {int(r): grid.coords(int(r)) if grid is not None else (int(r), 0, 0) for r in seen}
    at = np.searchsorted(seen, ranks)
    pp, dp, tp = (np.array([coords[int(r)][i] for r in seen], dtype=np.int64)[at]
                  for i in range(3))
    return events.assign(pp_rank=pp, tp_rank=tp, dp_rank=dp)


def _check_events(path: Path, events: pd.DataFrame, metadata: dict) -> None:
    """Refuse times no run can have, and ranks outside the run's world."""
    starts, ends = events["start"].to_numpy(), events["end"].to_numpy()
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
        raise RunError(f"{path} has events with infinite or missing times")
    if (ends < starts).any():
        first = int(np.argmax(ends < starts))
        raise RunError(f"{path} has an event that ends before it starts (row {first})")
    ranks = events["rank"].to_numpy()
    world = metadata.get("world_size")
    if not isinstance(world, int) or isinstance(world, bool):
        schedule = metadata.get("schedule") if isinstance(metadata.get("schedule"), dict) else {}
        world = schedule.get("pp_size") if metadata.get("source") == "simulated" else None
    limit = world if isinstance(world, int) and 0 < world <= limits.MAX_WORLD_SIZE \
        else limits.MAX_WORLD_SIZE
    outside = ranks[(ranks < 0) | (ranks >= limit)]
    if len(outside):
        raise RunError(f"{path} has events of rank {int(outside[0])}, outside the run's "
                       f"{limit} ranks")


_cache: OrderedDict[tuple, Run] = OrderedDict()


def _stamp(path: Path) -> tuple:
    info = path.stat()
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def load_run(directory: str | os.PathLike) -> Run:
    """Read a run directory; raise RunError with a one-line reason if it is not a good run.

    Runs are immutable once saved, so a run whose files have not changed since the last
    read comes from a small cache instead of being parsed again on every page refresh; its
    events are shared with the cache, so treat them as read-only (copy before changing).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory} is not a directory")
    meta_path = _regular_file(directory, META_FILE)
    events_path = _regular_file(directory, EVENTS_FILE)
    key = (str(directory.resolve()), _stamp(meta_path), _stamp(events_path))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    metadata = _read_meta(meta_path)
    run = Run(directory, _read_events(events_path, metadata), metadata)
    _cache[key] = run
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return run


def list_runs(root: str | os.PathLike) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Every run directory directly under ``root``: the good ones, and (path, reason) for the rest.

    Hidden entries (such as a save in progress) are skipped; a missing root has no runs; a
    link that leads out of ``root`` is reported, not followed.
    """
    root = Path(root)
    good: list[Run] = []
    bad: list[tuple[Path, str]] = []
    if not root.is_dir():
        return good, bad
    inside = root.resolve()
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            bad.append((path, f"{path} is a link out of {root}; pplab does not follow it"))
            continue
        if not path.is_dir():
            continue
        try:
            good.append(load_run(path))
        except RunError as error:
            bad.append((path, str(error)))
        except OSError as error:  # unreadable, vanished while listing, ...
            bad.append((path, f"{path} cannot be read: {error.strerror or error}"))
    return good, bad


def write_chrome_trace(events: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``chrome_trace(events)`` to ``path`` atomically; open it at ui.perfetto.dev."""
    return write_text_atomic(path, json.dumps(chrome_trace(events)))
