"""The runtime lab from a notebook: grade functions defined in cells, draw their timeline.

The notebook's answer cell defines ``blocking_step`` and ``overlapped_step``; the kernel
never runs them for the grade. Their source (and that of the helpers they call, found as
``lab_notebook.functions_source`` finds them) is written to a ``my_runtime.py`` of a
temporary folder, which the grader and the timeline run exactly as they run a learner's file.

    lab.check({"blocking_step": blocking_step, "overlapped_step": overlapped_step}, LEARNER)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from pplab.exercises.checking import PLACEHOLDER_LEARNER
from pplab.exercises.coding_lab import LabResult
from pplab.exercises.core import learner_key
from pplab.exercises.lab_notebook import functions_source
from pplab.exercises.runtime_lab import LAB, PARTS, SKELETON, check_file

HEADER = "import torch\nimport torch.distributed as dist\n\n\n"


def _written(functions: Mapping[str, Callable], folder: str) -> Path:
    wanted = {name: functions[name] for name in LAB.functions if callable(functions.get(name))}
    path = Path(folder) / SKELETON
    path.write_text(HEADER + functions_source(wanted))
    return path


def check(functions: Mapping[str, Callable], learner: str | None = None,
          course: str | None = None) -> LabResult:
    """The grade of the notebook's functions, as ``pplab exercise check runtime-lab``."""
    if learner is not None and learner_key(learner) == PLACEHOLDER_LEARNER:
        learner = None
    with tempfile.TemporaryDirectory(prefix="pplab-notebook-") as folder:
        return check_file(_written(functions, folder), learner, course,
                          source="your functions")


def timeline(functions: Mapping[str, Callable], part: str):
    """The figure of the notebook's runtime (``part`` of ``PARTS``) above pplab's engine on
    the same schedule, with the step times and their ratio in its title; or, when it
    cannot run, what went wrong printed (never a traceback)."""
    from pplab.exercises.runtime_timeline import compare

    if part not in PARTS:
        print(f"no part {part!r}; choose one of {', '.join(PARTS)}")
        return None
    with tempfile.TemporaryDirectory(prefix="pplab-notebook-") as folder:
        figure, lines = compare(_written(functions, folder), part)
    if figure is None:
        print(lines[0])
        return None
    figure.update_layout(title="; ".join(lines))
    return figure
