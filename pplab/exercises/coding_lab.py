"""What every coding lab shares: a file the learner writes, graded part by part.

A coding lab (``schedule-lab``, ``runtime-lab``) is an exercise answered by a file of code
rather than by typed answers. Its grader runs the file in the guard's child processes
(``pplab.exercises.guard``) on hidden cases and says, per part, right or the first thing
wrong. The CLI (``pplab exercise check ID --file F``), the app's Lessons page, the notebooks
and ``pplab exercise report`` call ``lab.check_file`` and read the ``LabResult``; they do not
know which lab it is.

    pplab exercise list
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pplab.exercises.checking import Verdict
from pplab.exercises.core import BadAnswer
from pplab.limits import MAX_LAB_FILE_BYTES, MAX_LAB_SHOWN_CHARS


@dataclass
class LabResult:
    """The grade of one file (or of a notebook's functions): a verdict per part."""

    learner: str | None
    source: str
    verdicts: list[Verdict] = field(default_factory=list)
    printed: str = ""
    orders: dict[str, list] = field(default_factory=dict)  # schedule lab: part -> cells
    refused: str | None = None  # the guard refused something the code did: no points
    total: int = 3  # parts the lab has
    noun: str = "schedules on target"

    @property
    def points(self) -> int:
        return sum(v.right for v in self.verdicts)

    @property
    def all_right(self) -> bool:
        return self.points == self.total

    def __str__(self) -> str:
        lines = [f"{self.source}, hidden cases for {self.learner or 'anyone'}:"]
        if self.refused:
            lines.append(f"{self.refused} (no points)")
        lines += [v.line() for v in self.verdicts]
        if self.printed and not self.all_right:
            lines.append("your code printed:\n" + self.printed[:MAX_LAB_SHOWN_CHARS])
        lines.append(f"{self.points} of {self.total} {self.noun}"
                     + (": well done" if self.all_right else ""))
        return "\n".join(lines)

    __repr__ = __str__  # the last expression of a notebook cell shows as this text


def readable_lab_file(path: str | os.PathLike, skeleton: str) -> Path:
    """``path`` if it is a Python file of a sensible size; BadAnswer naming the skeleton."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise BadAnswer(f"{path} is not a Python file; copy {skeleton} and pass your copy")
    if path.stat().st_size > MAX_LAB_FILE_BYTES:
        raise BadAnswer(f"{path} is over {MAX_LAB_FILE_BYTES // 1024} KiB; a lab file is small")
    return path


@dataclass(frozen=True)
class CodingLab:
    """An exercise answered by a file of code: subclasses say how it is shown and graded."""

    id: str
    title: str
    lesson: str
    kind: ClassVar[str] = "coding lab"
    skeleton: ClassVar[str] = ""  # the file the learner copies from the lesson folder
    part_keys: ClassVar[tuple[str, ...]] = ()
    functions: ClassVar[tuple[str, ...]] = ()  # what the learner's file defines

    def check_file(self, path, learner: str | None = None, course: str | None = None,
                   source: str | None = None) -> LabResult:
        raise NotImplementedError

    def show(self, learner: str | None = None, course: str | None = None) -> str:
        raise NotImplementedError
