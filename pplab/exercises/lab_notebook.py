"""The coding lab from a notebook: grade functions written in cells, look at one of them.

``check_functions`` grades the learner's three functions exactly as ``pplab exercise check
schedule-lab --file`` grades a file: it gathers the source of the cells that define them
(and of the cells that define what they call), writes it to a file and hands that file to
the guard, so a notebook's grade comes from the same isolated child as everyone else's,
never from the kernel the learner controls. ``preview`` runs one function in the kernel, for
a look only: the Gantt chart of its order, or validate's reason when it cannot run.

    python -c "from pplab.exercises import lab_notebook; help(lab_notebook.check_functions)"
"""

from __future__ import annotations

import inspect
import linecache
import tempfile
import types
from collections.abc import Callable, Mapping
from pathlib import Path

from pplab.exercises import lab_runner
from pplab.exercises.checking import PLACEHOLDER_LEARNER
from pplab.exercises.core import learner_key
from pplab.exercises.guard import Outcome
from pplab.exercises.lab_cases import hidden_cases
from pplab.exercises.schedule_lab import (
    RUN_TIMEOUT_S,
    SKELETON,
    TARGETS,
    LabResult,
    check_file,
    grade_outcome,
)
from pplab.limits import MAX_LAB_ACTIONS_PER_RANK, MAX_LAB_FILE_BYTES
from pplab.schedules import Schedule, parse_action, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate


def _names(code: types.CodeType) -> set[str]:
    """Every global name a function's code (nested functions included) refers to."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names(constant)
    return names


def functions_source(functions: Mapping[str, Callable]) -> str:
    """The text of the cells (or files) that define ``functions`` and the functions and
    classes they refer to, helpers first: what the learner wrote, to be run elsewhere."""
    files: list[str] = []
    seen: set[int] = set()

    def visit(thing: object) -> None:
        if id(thing) in seen:
            return
        seen.add(id(thing))
        if inspect.isclass(thing):
            for member in vars(thing).values():
                if inspect.isfunction(member) and member.__module__ == thing.__module__:
                    visit(member)
            return
        code = getattr(thing, "__code__", None)
        if code is None:
            return
        for name in sorted(_names(code)):
            helper = getattr(thing, "__globals__", {}).get(name)
            # the learner's own helpers only: another module's code is not theirs to hand in
            if (inspect.isfunction(helper) or inspect.isclass(helper)) \
                    and helper.__module__ == thing.__module__:
                visit(helper)
        if code.co_filename not in files:
            files.append(code.co_filename)

    for function in functions.values():
        visit(function)
    return "\n\n".join("".join(linecache.getlines(name)) for name in files)


def check_functions(functions: Mapping[str, Callable], learner: str | None = None,
                    course: str | None = None, timeout: float = RUN_TIMEOUT_S) -> LabResult:
    """Grade functions defined in a notebook, through the guard (the kernel never runs them
    for the grade)."""
    if learner is not None and learner_key(learner) == PLACEHOLDER_LEARNER:
        learner = None
    wanted = [name for name, _, _ in TARGETS.values()]
    missing = [name for name in wanted if not callable(functions.get(name))]
    text = functions_source({name: functions[name] for name in wanted if name not in missing})
    if not text.strip() or len(text.encode()) > MAX_LAB_FILE_BYTES:
        cases = hidden_cases(learner, course)
        problem = (f"no function {', '.join(missing)} is defined" if missing else
                   "the source of your functions cannot be found (define them in a cell)")
        return grade_outcome(Outcome(None, failed=problem), cases, learner, "your functions")
    with tempfile.TemporaryDirectory(prefix="pplab-notebook-") as folder:
        path = Path(folder) / SKELETON
        path.write_text(text)
        return check_file(path, learner, course, timeout, source="your functions")


def preview(function: Callable, p: int, m: int, *limit: int, cost: CostModel | None = None):
    """A notebook's look at one of its functions: the Gantt chart of its order at (p, m) (and
    the limit k or d it takes), or, when the order cannot run, the reason printed
    (validate's message), never a traceback."""
    name = getattr(function, "__name__", "it")
    try:
        cells = lab_runner.order_cells(function(p, m, *limit), p, MAX_LAB_ACTIONS_PER_RANK)
    except NotImplementedError:
        print(f"{name} is not written yet")
        return None
    except Exception as error:  # the learner's code: say what, never a traceback
        print(f"{name}({', '.join(map(str, (p, m, *limit)))}) raised "
              f"{type(error).__name__}: {error}")
        return None
    try:
        orders = {rank: [parse_action(cell) for cell in row] for rank, row in enumerate(cells)}
        schedule = validate(Schedule(orders, tuple(range(p)), m, name="yours"))
    except ValueError as error:
        print(f"your order at p = {p}, m = {m} cannot run: {error}")
        return None
    from pplab.charts import gantt

    return gantt(simulate(schedule, cost or CostModel()),
                 title=f"your {name}, p={p} m={m} (predicted)")
