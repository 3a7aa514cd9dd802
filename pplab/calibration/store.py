"""A run's calibration, fitted once and kept beside it as ``calibration.json``.

A run directory is immutable once saved: its ``events.parquet`` and ``meta.json`` are never
touched. The calibration is derived from them, so it is a cache, not part of the record:
fitted on first use (by the Runs page, ``pplab predict`` or a lesson), written atomically
beside the run when the folder is writable (a bundled run ships with its own), and refitted
when the file is missing, damaged, from another format version, or was fitted from other
events (it keeps a fingerprint of the events it read). A folder that cannot be written
keeps its calibration in memory for the session instead.

    python -c "from pplab.calibration import calibration_for; from pplab.timeline import \
load_run; print(calibration_for(load_run('data/runs/gpipe-p2m8')).measured)"
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from pplab import limits
from pplab.calibration.fit import fit
from pplab.calibration.model import Calibration
from pplab.runs.atomic_files import write_text_atomic
from pplab.runs.run_dirs import Run

CALIBRATION_FILE = "calibration.json"
_CACHE_SIZE = 64
_cache: OrderedDict[tuple, Calibration] = OrderedDict()


def fingerprint(run: Run) -> list[float]:
    """Rows and time sums of the events: enough to notice a calibration of other events."""
    events = run.events
    return [float(len(events)), round(float(events["start"].sum()), 6),
            round(float(events["end"].sum()), 6)]


def calibration_for(run: Run, save: bool = True) -> Calibration:
    """``run``'s calibration: from memory, from its calibration.json, or fitted now (and
    written beside the run when ``save`` and the folder allows). ValueError if the run
    cannot be calibrated (no measured computation, an unreadable schedule)."""
    stamp = fingerprint(run)
    key = (str(Path(run.path).resolve()), *stamp)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    path = Path(run.path) / CALIBRATION_FILE
    calibration = read_calibration(path, stamp)
    if calibration is None:
        calibration = fit(run)
        if save and Path(run.path).is_dir():
            write_calibration(path, calibration, stamp)
    _cache[key] = calibration
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return calibration


def read_calibration(path: Path, stamp: list[float]) -> Calibration | None:
    """The calibration saved at ``path`` if it is sound and of these events, else None."""
    try:
        if path.is_symlink() or not path.is_file() or \
                path.stat().st_size > limits.MAX_META_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("events") != stamp:
        return None
    try:
        return Calibration.from_json(json.dumps(data.get("calibration")))
    except ValueError:
        return None


def write_calibration(path: Path, calibration: Calibration, stamp: list[float]) -> bool:
    """Write atomically; False (and nothing written) where the folder is read-only."""
    text = json.dumps({"events": stamp, "calibration": json.loads(calibration.to_json())},
                      indent=2, sort_keys=True)
    try:
        write_text_atomic(path, text + "\n")
    except OSError:
        return False
    return True
