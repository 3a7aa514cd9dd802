"""The lessons: where their folders are, and which exercise each one asks.

Each lesson is a folder ``NN-name/`` (or ``NNa-name/``, a lesson between NN and the next;
found through ``pplab.runs.resources.lessons_dir()``) with its
text ``README.md`` (the first line is the title) and a notebook ``lesson.ipynb``. Its exercise
lives in this package, not in the folder: a learner reads the lesson folder, and nothing in it
holds an answer. The app's Lessons page, the notebooks and ``pplab exercise`` all find the
lesson's exercise here.

    python -c "from pplab.exercises import find_lessons; print([l.name for l in find_lessons()])"
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pplab.exercises.core import EXERCISES
from pplab.runs.resources import lessons_dir

LESSON_GLOB = "[0-9][0-9]*-*"


@dataclass(frozen=True)
class Lesson:
    """One lesson folder: ``README.md``, ``lesson.ipynb``, and the exercise that goes with it."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @cached_property  # read once per Lesson: title, objectives and the page all use it
    def text(self) -> str:
        return (self.folder / "README.md").read_text()

    @property
    def title(self) -> str:
        return self.text.splitlines()[0].lstrip("# ").strip()

    @property
    def objectives(self) -> list[str]:
        """The bullets under the text's "You will learn" heading (none if it has none)."""
        lines = self.text.splitlines()
        start = next((i for i, line in enumerate(lines) if "you will learn" in line.casefold()),
                     None)
        if start is None:
            return []
        found: list[str] = []
        for line in lines[start + 1:]:
            stripped = line.strip()
            if stripped[:2] in ("* ", "- "):
                found.append(stripped[2:].strip())
            elif found and stripped and not stripped.startswith("#"):
                found[-1] += " " + stripped  # a bullet that goes on over lines
            elif found or stripped.startswith("#"):
                break  # the blank line or heading after the list
        return found

    @property
    def notebook(self) -> Path:
        return self.folder / "lesson.ipynb"

    @property
    def exercises(self) -> list:
        """Every exercise (or coding lab) this lesson asks, in the order they are listed."""
        return [e for e in EXERCISES.values() if e.lesson == self.name]

    @property
    def exercise(self):
        """The lesson's first exercise (or coding lab), or None."""
        return next(iter(self.exercises), None)


def find_lessons(root: Path | None = None) -> list[Lesson]:
    """Every ``NN-name/`` (or ``NNa-name/``) folder holding a ``README.md``, in order
    (default: the installed lessons): ``04a-`` sorts after ``04-`` and before ``05-``."""
    root = lessons_dir() if root is None else Path(root)
    return [Lesson(folder) for folder in sorted(root.glob(LESSON_GLOB))
            if (folder / "README.md").is_file()]
