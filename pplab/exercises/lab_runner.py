"""The child process of the coding lab: load a learner's file, call its builders, write orders.

The grader (``pplab.exercises.schedule_lab``) never imports a learner's file into its own
process, the app's least of all: it starts this script in a fresh interpreter with a time
limit and bounded memory and output, hands it the cases on stdin, and reads back one JSON
file of plain strings, which it then checks itself. What the learner's code prints is kept,
cut to a few thousand characters, for the error message. pplab's own schedule builders are
switched off here: the lab is about writing them. This bounds a learner's mistakes (an endless
loop, a flood of output); it is no sandbox against a hostile file, which runs with the
grader's permissions.

Only the standard library and ``pplab.limits`` (itself only ``math``) are imported up front,
so the child starts quickly.

    python pplab/exercises/lab_runner.py my_schedules.py result.json < cases.json
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import traceback
import types
from pathlib import Path

from pplab.limits import (
    MAX_LAB_ACTIONS_PER_RANK,
    MAX_LAB_MEMORY_BYTES,
    MAX_LAB_PRINTED_CHARS,
    MAX_LAB_WRITTEN_BYTES,
)

# Modules of pplab.schedules a learner may use: the action language, validation, CSV.
LANGUAGE = {"pplab.schedules.actions", "pplab.schedules.validate", "pplab.schedules.csv_io"}


class BoundedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int = MAX_LAB_PRINTED_CHARS):
        self.kept: list[str] = []
        self.size = 0
        self.limit = limit

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self.limit - self.size
        if room > 0:
            self.kept.append(text[:room])
        self.size += len(text)
        return len(text)

    def text(self) -> str:
        cut = self.size > self.limit
        return "".join(self.kept) + (f"\n... ({self.size - self.limit:,} more characters)"
                                     if cut else "")


def _switch_off_builders() -> None:
    """Leave the action language importable and make pplab's builders say why they are off."""
    try:
        import pplab.schedules as schedules
    except ImportError:
        return
    message = "pplab's schedule builders are off in the lab: build the orders yourself"
    blocked = {"build", "SCHEDULES", "depth_from_flags"}

    class Off(types.ModuleType):
        def __getattr__(self, name: str):
            raise ImportError(message)

    for name in [n for n in sys.modules if n.startswith("pplab.schedules.")]:
        if name not in LANGUAGE:
            sys.modules[name] = Off(name)
            blocked.add(name.rsplit(".", 1)[1])
    for name in blocked:
        vars(schedules).pop(name, None)

    def missing(name: str):  # the package's own __getattr__ (PEP 562)
        if name in blocked:
            raise ImportError(message)
        raise AttributeError(f"module 'pplab.schedules' has no attribute {name!r}")

    schedules.__getattr__ = missing


def _where(error: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve() == path]
    return f" (line {frames[-1].lineno} of {path.name})" if frames else ""


def order_cells(result: object, pp_size: int) -> list[list[str]]:
    """``{rank: [actions]}`` or ``[[actions] per rank]`` as lists of strings, or ValueError."""
    if isinstance(result, dict):
        if sorted(result) != list(range(pp_size)):
            raise ValueError(f"returned ranks {sorted(result, key=str)[:8]}; expected "
                             f"0..{pp_size - 1}")
        rows = [result[rank] for rank in range(pp_size)]
    elif isinstance(result, list | tuple):
        rows = list(result)
    else:
        raise ValueError(f"returned {type(result).__name__}; return {{rank: [actions]}}")
    cells = []
    for rank, row in enumerate(rows):
        if not isinstance(row, list | tuple):
            raise ValueError(f"rank {rank}'s order is {type(row).__name__}, not a list")
        if len(row) > MAX_LAB_ACTIONS_PER_RANK:
            raise ValueError(f"rank {rank} has {len(row):,} actions, far more than the case needs")
        cells.append([str(cell) for cell in row])
    return cells


def run(path: Path, request: dict) -> dict:
    printed = BoundedText()
    sys.stdout = sys.stderr = printed
    outcome: dict = {"results": {}}
    try:
        sys.path.insert(0, str(path.parent))
        _switch_off_builders()
        spec = importlib.util.spec_from_file_location("learner_schedules", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except BaseException as error:  # anything the file does at import time is its own fault
        outcome["load_error"] = (f"{type(error).__name__}: {str(error)[:300]}"
                                 f"{_where(error, path)}")
        outcome["printed"] = printed.text()
        return outcome
    for name in request["functions"]:
        function = getattr(module, name, None)
        answers = outcome["results"][name] = []
        for pp_size, num_microbatches in request["cases"]:
            if not callable(function):
                answers.append({"error": f"{path.name} defines no function {name}(p, m)"})
                continue
            try:
                result = function(pp_size, num_microbatches)
            except NotImplementedError:
                answers.append({"error": f"{name} is not written yet: replace its `raise "
                                         f"NotImplementedError` with your code"})
                continue
            except BaseException as error:  # SystemExit too: the grader must answer
                answers.append({"error": f"{name}({pp_size}, {num_microbatches}) raised "
                                         f"{type(error).__name__}: {str(error)[:300]}"
                                         f"{_where(error, path)}"})
                continue
            try:
                answers.append({"orders": order_cells(result, pp_size)})
            except ValueError as error:
                answers.append({"error": f"{name}({pp_size}, {num_microbatches}) {error}"})
    outcome["printed"] = printed.text()
    return outcome


def _limit_myself(seconds: float) -> None:
    """Bound this process's memory, file writes and CPU time before any learner code runs
    (set here, not by the parent: a preexec hook is unsafe in a threaded parent, the app)."""
    try:
        import resource
    except ImportError:
        return
    for limit, value in ((resource.RLIMIT_AS, MAX_LAB_MEMORY_BYTES),
                         (resource.RLIMIT_FSIZE, MAX_LAB_WRITTEN_BYTES),
                         (resource.RLIMIT_CPU, int(seconds) + 1)):
        soft, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, hard))


def main(argv: list[str]) -> int:
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # this folder's modules must not shadow the learner's imports
    path, out = Path(argv[0]).resolve(), Path(argv[1])
    request = json.load(sys.stdin)
    _limit_myself(request.get("seconds", 30))
    outcome = run(path, request)
    out.write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
