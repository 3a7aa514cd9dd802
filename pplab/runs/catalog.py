"""Where the lab finds runs, comparisons, example schedules and lessons, and how it lists them.

The lab shows two kinds of runs together: the ones bundled with pplab (``data/runs``, and
the comparisons in ``data/comparisons``) and the user's own (the folder named by
``PPLAB_RUNS_DIR``, default ``./runs``), including comparisons made with ``pplab compare``
that sit in it. A broken or foreign folder among them is reported with its reason and
never hides the good ones. The bundled folders come from ``pplab.runs.resources`` (package
data), the user's from the environment.

    python -m pplab.runs.catalog
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pplab.runs.comparisons import find_comparisons, is_comparison
from pplab.runs.resources import bundled_comparisons_dir, bundled_runs_dir, example_schedules_dir
from pplab.runs.run_dirs import Run, list_runs
from pplab.runs.summary import RunSummary, summarize

__all__ = ["bundled_runs_dir", "bundled_comparisons_dir", "example_schedules_dir",
           "user_runs_dir", "user_comparisons_dirs", "example_schedules", "ComparisonFolder",
           "Entry", "comparison_folders", "find_runs", "entry_at", "RUNS_ENV", "USER_COMPARISONS"]

RUNS_ENV = "PPLAB_RUNS_DIR"
USER_COMPARISONS = "comparisons"  # the user's comparisons may also sit in runs/comparisons/


def user_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


def user_comparisons_dirs() -> list[Path]:
    """Where the user's ``pplab compare`` folders are looked for: in the runs folder itself
    and in its ``comparisons`` subfolder."""
    return [user_runs_dir(), user_runs_dir() / USER_COMPARISONS]


def example_schedules() -> dict[str, Path]:
    """The bundled example schedule CSVs by file name, e.g. ``1f1b-p4m8.csv``."""
    folder = example_schedules_dir()
    return {path.name: path for path in sorted(folder.glob("*.csv"))} if folder.is_dir() else {}


@dataclass(frozen=True)
class ComparisonFolder:
    """A folder written by ``pplab compare``: bundled, or the user's."""

    name: str
    path: Path
    bundled: bool

    @property
    def origin(self) -> str:
        """How its runs are labelled: ``comparison NAME`` or ``your comparison NAME``."""
        return f"{'comparison' if self.bundled else 'your comparison'} {self.name}"

    @property
    def title(self) -> str:
        """How the lab offers it: ``bundled comparison NAME`` or ``your comparison NAME``."""
        return f"bundled {self.origin}" if self.bundled else self.origin


@dataclass(frozen=True)
class Entry:
    """A run as the lab lists it: where it comes from, and a label a person can read."""

    label: str
    origin: str  # "bundled", "yours", "comparison <name>" or "your comparison <name>"
    run: Run
    summary: RunSummary
    comparison: ComparisonFolder | None = None


def comparison_folders() -> list[ComparisonFolder]:
    """Bundled comparisons first, then the user's, each folder once."""
    found = [ComparisonFolder(p.name, p, True) for p in find_comparisons(bundled_comparisons_dir())]
    seen = {folder.path.resolve() for folder in found}
    for root in user_comparisons_dirs():
        for path in find_comparisons(root):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(ComparisonFolder(path.name, path, False))
    return found


def find_runs(roots: list[tuple[str, Path]] | None = None,
              ) -> tuple[list[Entry], list[tuple[Path, str]]]:
    """Every run under the bundled and user folders (or ``roots``), plus (path, reason) problems.

    A comparison folder, or the user's ``comparisons`` folder, is not a broken run: its runs
    are listed with the comparison as their origin.
    """
    folders = comparison_folders() if roots is None else []
    if roots is None:
        roots = [("bundled", bundled_runs_dir()), ("yours", user_runs_dir())]
        roots += [(folder.origin, folder.path) for folder in folders]
    of_origin = {folder.origin: folder for folder in folders}
    entries: list[Entry] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for origin, root in roots:
        if root.resolve() in seen:
            continue
        seen.add(root.resolve())
        runs, bad = list_runs(root)
        problems += [(path, why) for path, why in bad if not _holds_comparisons(path)]
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
            summary = summarize(run)
            entries.append(Entry(f"{summary.label} · {run.path.name} ({origin})", origin, run,
                                 summary, of_origin.get(origin)))
    return entries, problems


def entry_at(entries: list[Entry], path: str | os.PathLike) -> Entry | None:
    """The listed run saved at ``path``, if it is listed."""
    wanted = Path(path).resolve()
    return next((entry for entry in entries if entry.run.path.resolve() == wanted), None)


def _holds_comparisons(path: Path) -> bool:
    return is_comparison(path) or (path.name == USER_COMPARISONS and path.is_dir())


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
