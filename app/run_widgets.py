"""The recorded runs the pages list: the catalog of bundled and user runs, read again every few
seconds or at once after a run is saved, and each run's last step, cached by its folder's time.

    streamlit run app/lab.py     # the Runs and Compare pages list what this finds
"""

from __future__ import annotations

import time

import streamlit as st
from shared_work import shared_cache

from pplab.calibration.run_views import MeasuredStep, last_step
from pplab.runs import catalog as runs_catalog
from pplab.runs import run_dirs
from pplab.timeline.labels import plain_text

CATALOG_SECONDS = 10  # how long a listing of the runs folders is reused
_catalog_generation = [0]  # raised when a run is saved, so every session lists it at once


def catalog() -> tuple[list[runs_catalog.Entry], list[tuple[str, str]]]:
    """Bundled and user runs, and (path, reason) for folders that are not good runs."""
    return _catalog(str(runs_catalog.user_runs_dir()), int(time.monotonic() // CATALOG_SECONDS),
                    _catalog_generation[0])


@shared_cache
def _catalog(user_dir: str, _window: int,
             _generation: int) -> tuple[list[runs_catalog.Entry], list[tuple[str, str]]]:
    # Every argument is part of the key: PPLAB_RUNS_DIR may point elsewhere between
    # sessions; a new window of a few seconds, or a new generation, reads the folders again.
    entries, problems = runs_catalog.find_runs()
    return entries, [(str(path), reason) for path, reason in problems]


def refresh_catalog() -> None:
    _catalog_generation[0] += 1


def show_problems(problems: list[tuple[str, str]]) -> None:
    for path, reason in problems:
        st.warning(plain_text(f"Skipped {path}: {reason}"))


@shared_cache
def measured_step(path: str, stamp: float) -> MeasuredStep:
    """A recorded run's last step. ``stamp`` (the folder's mtime) is part of the cache key so
    a re-recorded run is re-read."""
    return last_step(run_dirs.load_run(path))


def load_measured(entry: runs_catalog.Entry) -> MeasuredStep:
    """``measured_step`` of a listed run. The catalog is cached for a few seconds, so a run
    deleted or spoiled since then stops the page with one line instead of a traceback."""
    try:
        return measured_step(str(entry.run.path), entry.run.path.stat().st_mtime)
    except (OSError, ValueError) as error:
        st.error(plain_text(f"{entry.run.path} can no longer be read: "
                            f"{str(error).splitlines()[0]}"))
        st.stop()
