"""Lessons and their exercises: where they are, how to load one, and the shell face they share.

Each lesson is a folder ``NN-name/`` (found through ``pplab.resources.lessons_dir()``) with
its text ``README.md``, a notebook ``lesson.ipynb`` and an ``exercise.py`` that holds the
question and a ``check(answer) -> (right, message)`` running the simulator. The app's Lessons
page, the notebooks and the shell all load the same checker; ``exercise_main`` turns it into
a command with the exit codes scripts expect.

    .venv/bin/python lessons/01-the-bubble/exercise.py 27
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .resources import lessons_dir


@dataclass(frozen=True)
class Lesson:
    """One lesson folder: ``README.md`` (its first line is the title), notebook, exercise."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def text(self) -> str:
        return (self.folder / "README.md").read_text()

    @property
    def title(self) -> str:
        return self.text.splitlines()[0].lstrip("# ").strip()

    @property
    def notebook(self) -> Path:
        return self.folder / "lesson.ipynb"

    @property
    def exercise_file(self) -> Path:
        return self.folder / "exercise.py"


def find_lessons(root: Path | None = None) -> list[Lesson]:
    """Every ``NN-name/`` folder holding a ``README.md``, in order (default: the installed
    lessons)."""
    root = lessons_dir() if root is None else Path(root)
    return [Lesson(folder) for folder in sorted(root.glob("[0-9][0-9]-*"))
            if (folder / "README.md").is_file()]


def load_exercise(lesson: Lesson) -> ModuleType:
    """The lesson's ``exercise.py`` as a fresh module, with its ``QUESTION`` and ``check``."""
    if not lesson.exercise_file.is_file():
        raise FileNotFoundError(f"{lesson.name} has no exercise.py")
    name = f"pplab_lesson_{lesson.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, lesson.exercise_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def exercise_main(argv: list[str], *, question: str, answer_name: str,
                  read: Callable[[str], object | None], unreadable: str,
                  check: Callable[[str], tuple[bool, str]]) -> int:
    """Exit 2 with one line for no answer or one ``read`` cannot parse; else print ``check``'s
    message and exit 0 when right, 1 when wrong."""
    if len(argv) != 1:
        print(f"usage: python exercise.py {answer_name}\n{question}", file=sys.stderr)
        return 2
    if read(argv[0]) is None:
        print(f"exercise: {argv[0]!r} {unreadable}", file=sys.stderr)
        return 2
    right, message = check(argv[0])
    print(message)
    return 0 if right else 1
