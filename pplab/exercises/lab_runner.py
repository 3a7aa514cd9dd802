"""The coding lab's task inside the guard: load a learner's file, call its builders, hand back
the orders as plain strings.

``pplab.exercises.guard`` loads this module in its child process before its audit hook goes
in, then calls ``run``: the learner's file is executed, each function is called on the cases
the parent sent (``[p, m]``, ``[p, m, k]``...), and every rank's order comes back as a list of
strings (``"2F0"``), whatever the learner returned (pplab's own ``Action`` is out of reach in
the child; the skeleton defines a small one of its own, and ``str`` of it is all that is
read). The parent checks those strings with pplab's validate and simulator; nothing the
child says is taken on trust. What the learner's code prints is kept, cut to the parent's
bound, for the error messages.

Standard library only, and no source file is read after the hook is in (a traceback is
located from its frames, not printed): the hook refuses reading pplab's files.

    (run by pplab.exercises.guard: pplab exercise check schedule-lab --file my_schedules.py)
"""

from __future__ import annotations

import importlib.util
import io
import sys
import traceback
from pathlib import Path


class BoundedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int):
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


def _where(error: BaseException, path: Path) -> str:
    """`` (line N of FILE)`` for the learner's deepest frame, read from the frames alone."""
    lines = [line for frame, line in traceback.walk_tb(error.__traceback__)
             if frame.f_code.co_filename == str(path)]
    return f" (line {lines[-1]} of {path.name})" if lines else ""


def order_cells(result: object, pp_size: int, max_per_rank: int) -> list[list[str]]:
    """``{rank: [actions]}`` or ``[[actions] per rank]`` as lists of strings, or ValueError."""
    if isinstance(result, dict):
        if set(result) != set(range(pp_size)):
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
        if len(row) > max_per_rank:
            raise ValueError(f"rank {rank} has {len(row):,} actions, far more than the case needs")
        cells.append([str(cell) for cell in row])
    return cells


def _call(function, name: str, args: list, path: Path, max_per_rank: int) -> dict:
    shown = ", ".join(str(a) for a in args)
    try:
        result = function(*args)
    except NotImplementedError:
        return {"error": f"{name} is not written yet: replace its `raise NotImplementedError` "
                         f"with your code"}
    except BaseException as error:  # SystemExit too: the grader must answer
        return {"error": f"{name}({shown}) raised {type(error).__name__}: {str(error)[:300]}"
                         f"{_where(error, path)}"}
    try:
        return {"orders": order_cells(result, args[0], max_per_rank)}
    except ValueError as error:
        return {"error": f"{name}({shown}) {error}"}


def run(path: Path, request: dict) -> dict:
    """Every function of ``request["functions"]`` called on its cases: ``{"results":
    {name: [{"orders": cells} or {"error": text}, ...]}, "printed": text}``, or a
    ``load_error`` when the file itself cannot run."""
    printed = BoundedText(request["max_printed_chars"])
    sys.stdout = sys.stderr = printed
    outcome: dict = {"results": {}}
    try:
        spec = importlib.util.spec_from_file_location("learner_schedules", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # a dataclass in the file looks its module up there
        spec.loader.exec_module(module)
    except BaseException as error:  # anything the file does at import time is its own fault
        outcome["load_error"] = (f"{type(error).__name__}: {str(error)[:300]}"
                                 f"{_where(error, path)}")
        outcome["printed"] = printed.text()
        return outcome
    for entry in request["functions"]:
        name = entry["name"]
        function = getattr(module, name, None)
        outcome["results"][name] = [
            _call(function, name, args, path, request["max_actions_per_rank"])
            if callable(function) else {"error": f"{path.name} defines no function "
                                                 f"{name}({entry['signature']})"}
            for args in entry["cases"]]
    outcome["printed"] = printed.text()
    return outcome
