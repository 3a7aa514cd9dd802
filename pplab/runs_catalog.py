"""Finding recorded runs, and predicting each one from its own schedule.

The lab shows two kinds of runs together: the ones bundled with pplab (``data/runs`` and the
comparisons in ``data/comparisons``, found beside the package) and the user's own (the
folder named by ``PPLAB_RUNS_DIR``, default ``./runs``). A broken or foreign folder among them
is reported with its reason and never hides the good ones.

To put a prediction over a measurement on one time axis, the cost model is *calibrated* from
the measured run itself: the median measured duration of each kind of work becomes that
kind's cost, in seconds. The simulator then replays the same schedule with those costs, so
any difference left is what the schedule alone does not explain (communication, stragglers,
warm-up).

    python -m pplab.runs_catalog
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .schedules import build, schedule_from_csv_text
from .schedules.actions import Schedule
from .timeline import Run, list_runs

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_ENV = "PPLAB_RUNS_DIR"
MAX_REPLAY_ACTIONS = 200_000  # a foreign meta.json must not make the lab simulate for hours


def bundled_runs_dir() -> Path:
    return REPO_ROOT / "data" / "runs"


def bundled_comparisons_dir() -> Path:
    return REPO_ROOT / "data" / "comparisons"


def user_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


@dataclass(frozen=True)
class Entry:
    """A run as the lab lists it: where it comes from, and a label a person can read."""

    label: str
    origin: str  # "bundled", "yours" or "comparison <name>"
    run: Run


def describe(run: Run) -> str:
    """One line: schedule and sizes, e.g. ``1f1b p=4 m=8 · tp=2 · cpu``."""
    meta = run.metadata
    schedule = meta.get("schedule") if isinstance(meta.get("schedule"), dict) else {}
    parts = [str(schedule.get("name", "?"))]
    for key, short in (("pp_size", "p"), ("num_microbatches", "m"), ("num_chunks", "v")):
        value = schedule.get(key)
        if value is not None and not (key == "num_chunks" and value == 1):
            parts.append(f"{short}={value}")
    text = " ".join(parts)
    for key in ("tp_size", "dp_size"):
        value = meta.get(key)
        if isinstance(value, int) and value > 1:
            text += f" · {key[:2]}={value}"
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    if config.get("device"):
        text += f" · {config['device']}"
    return text


def find_runs(roots: list[tuple[str, Path]] | None = None,
              ) -> tuple[list[Entry], list[tuple[Path, str]]]:
    """Every run under the bundled and user folders (or ``roots``), plus (path, reason) problems."""
    if roots is None:
        roots = [("bundled", bundled_runs_dir()), ("yours", user_runs_dir())]
        comparisons = bundled_comparisons_dir()
        if comparisons.is_dir():
            roots += [(f"comparison {p.name}", p) for p in sorted(comparisons.iterdir())
                      if p.is_dir() and not p.name.startswith(".")]
    entries: list[Entry] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for origin, root in roots:
        if root.resolve() in seen:
            continue
        seen.add(root.resolve())
        runs, bad = list_runs(root)
        problems += bad
        for run in runs:
            if run.events.empty:
                problems.append((run.path, f"{run.path} holds no events: nothing to draw"))
                continue
            # The lab reads a recorded run's times as measured seconds; a saved simulation
            # is in cost units and would be shown as milliseconds it never took.
            if not (run.events["source"] == "measured").all():
                problems.append((run.path, f"{run.path} holds predicted (simulated) events, "
                                           "not a measured run"))
                continue
            entries.append(Entry(f"{describe(run)} · {run.path.name} ({origin})", origin, run))
    return entries, problems


def comparison_description(directory: Path) -> str:
    """The ``description`` a bundled comparison's comparison.json gives, or ''."""
    try:
        data = json.loads((directory / "comparison.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return ""
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def comparison_table(directory: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rows a bundled comparison.json records, and what each column means (may be empty)."""
    try:
        data = json.loads((directory / "comparison.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return pd.DataFrame(), {}
    rows = data.get("rows") if isinstance(data, dict) else None
    notes = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(), {}
    notes = {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}
    table = pd.DataFrame(rows)
    if notes:
        table = table[[c for c in notes if c in table.columns]]
    return table, notes


def schedule_of(run: Run) -> Schedule:
    """The schedule a run executed, from the CSV its metadata keeps (or rebuilt by name)."""
    schedule = run.metadata.get("schedule")
    if not isinstance(schedule, dict):
        raise ValueError(f"{run.path.name}: meta.json has no 'schedule' object")
    name = str(schedule.get("name", "custom"))
    # A CSV keeps the exact order, but not an asynchronous family's update rule: those are
    # rebuilt from their sizes.
    if schedule.get("csv") and not schedule.get("is_async"):
        replay = schedule_from_csv_text(str(schedule["csv"]), name=name)
        actions = sum(len(order) for order in replay.actions.values())
        if actions > MAX_REPLAY_ACTIONS:
            raise ValueError(f"{run.path.name}: its schedule of {actions:,} actions is too big to "
                             f"replay here (limit {MAX_REPLAY_ACTIONS:,})")
        return replay
    try:
        depth = int(schedule["pp_size"])
        microbatches = int(schedule["num_microbatches"])
        chunks = int(schedule.get("num_chunks") or 1)
        steps = int(schedule.get("num_steps") or 1)
    except KeyError as error:
        raise ValueError(f"{run.path.name}: meta.json schedule lacks {error}") from None
    except (TypeError, ValueError):
        raise ValueError(f"{run.path.name}: meta.json schedule sizes are not whole numbers: "
                         f"{schedule}") from None
    options = {"num_steps": steps} if schedule.get("is_async") else {}
    if depth * microbatches * chunks * steps > MAX_REPLAY_ACTIONS:
        raise ValueError(f"{run.path.name}: {depth} ranks x {microbatches} microbatches x "
                         f"{chunks} chunks x {steps} steps is too big to replay here "
                         f"(limit {MAX_REPLAY_ACTIONS:,})")
    return build(name, depth, microbatches, chunks, **options)


def one_step(events: pd.DataFrame, step: int) -> pd.DataFrame:
    """The events of one training step, shifted so the step starts at time 0."""
    part = events[events["step"] == step].copy()
    if part.empty:
        steps = sorted(int(s) for s in events["step"].unique())
        raise ValueError(f"step {step} is not in this run; it has steps {steps[0]}..{steps[-1]}")
    origin = part["start"].min()
    part["start"] -= origin
    part["end"] -= origin
    return part.reset_index(drop=True)


def calibrated_cost(events: pd.DataFrame):
    """A CostModel in seconds: each kind's median measured duration (latency left at 0)."""
    from .simulator import CostModel

    durations = (events["end"] - events["start"]).groupby(events["kind"]).median()
    defaults = CostModel()

    def pick(kind: str, fallback: float) -> float:
        value = durations.get(kind)
        return float(value) if value is not None and value > 0 else fallback

    forward = pick("F", 0.0)
    if forward <= 0:
        raise ValueError("the run has no measured forward (F) events to calibrate from")
    ratio = forward / defaults.forward
    return CostModel(
        forward=forward,
        backward=pick("B", defaults.backward * ratio),
        backward_input=pick("I", defaults.backward_input * ratio),
        backward_weight=pick("W", defaults.backward_weight * ratio),
        optimizer=pick("optim", 0.0),
    )


def predicted_for(run: Run, step: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predicted, measured) events of one step, both in seconds from the step's start.

    Interleaved runs measure a chunk, which is 1/V of a rank's share; the simulator's costs
    are per rank's share, so the calibrated costs are scaled up by V.
    """
    from dataclasses import replace

    from .simulator import simulate

    schedule = schedule_of(run)
    measured = one_step(run.events, step)
    cost = calibrated_cost(measured)
    chunks = max(1, schedule.num_chunks)
    if chunks > 1:
        cost = replace(cost, forward=cost.forward * chunks, backward=cost.backward * chunks,
                       backward_input=cost.backward_input * chunks,
                       backward_weight=cost.backward_weight * chunks)
    predicted = simulate(schedule, cost)
    predicted = predicted[predicted["step"] == predicted["step"].min()].reset_index(drop=True)
    return predicted, measured


def main() -> int:
    entries, problems = find_runs()
    for entry in entries:
        print(f"{entry.run.path}\t{entry.label}")
    for path, reason in problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not entries:
        print(f"no runs under {bundled_runs_dir()} or {user_runs_dir()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
