"""The exercise framework: one learner's numbers, questions in parts, and judgements.

An exercise is drawn for a learner. Its numbers (p, m, costs, the stage it asks about) come
from a seed that hashes the exercise id and the learner's name, so one learner gets the same
numbers every time and two learners rarely get the same ones: copying a neighbour's answer
does not work, understanding does. No answer is stored anywhere: each part has a *judge* that
runs the simulator on the learner's numbers when an answer comes in, and says why a wrong
answer is wrong without giving the right one away.

A part is one of four kinds (``pplab.exercises.parts``): a number, a choice among named
options, a schedule written in pplab's action language (``2F0 2B0``), or a short formula that
is evaluated on fresh values (so it cannot be fitted to one figure read off the simulator),
asked in one of several forms drawn per learner. In a notebook a schedule or a formula may
also be given as a Python function.

    pplab exercise show bubble --learner ada
"""

from __future__ import annotations

import hashlib
import os
import random
import textwrap
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import ClassVar

from pplab.limits import MAX_LEARNER_NAME_CHARS

LEARNER_ENV = "PPLAB_LEARNER"  # who you are, for commands run without --learner
COURSE_ENV = "PPLAB_COURSE"  # a course key mixed into every seed: a new term, new numbers
SHOW_WIDTH = 92
_SEED_VERSION = "pplab-exercise-v1"  # changing it gives every learner new numbers


class BadAnswer(ValueError):
    """An answer that cannot be read at all (not a wrong one): exit 2 on the command line."""


def learner_key(name: object) -> str:
    """The learner's name as seeds and records use it: case and spacing do not matter."""
    if not isinstance(name, str) or not " ".join(name.split()):
        raise BadAnswer("say who you are: --learner NAME (or set PPLAB_LEARNER); your "
                        "numbers depend on your name")
    key = " ".join(name.split()).casefold()
    if len(key) > MAX_LEARNER_NAME_CHARS or not key.isprintable():
        raise BadAnswer(f"a learner name is at most {MAX_LEARNER_NAME_CHARS} printable "
                        f"characters")
    return key


def course_key(course: str | None) -> str:
    """The course key given, else the one in $PPLAB_COURSE, else none."""
    return (os.environ.get(COURSE_ENV, "") if course is None else course).strip()


def variant_seed(exercise_id: str, learner: str, course: str = "") -> int:
    """A 64-bit seed from the exercise, the learner and the course: stable, and unrelated
    between learners (a hash, not a counter)."""
    text = "\x1f".join((_SEED_VERSION, course, exercise_id, learner_key(learner)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Variant:
    """One learner's copy of an exercise: the numbers its questions are asked with."""

    exercise_id: str
    learner: str
    course: str
    seed: int
    numbers: Mapping[str, object]

    def __getitem__(self, name: str) -> object:
        return self.numbers[name]

    def rng(self, purpose: str) -> random.Random:
        """A generator of its own for ``purpose`` (fresh values of a formula part)."""
        return random.Random(f"{self.seed}:{purpose}")


@dataclass(frozen=True)
class Judgement:
    """What a judge says. ``message`` is always shown; ``hint`` (a number the simulator
    predicts at the learner's own answer, or which way to go) only while hints are left."""

    right: bool
    message: str
    hint: str = ""


def right(message: str) -> Judgement:
    return Judgement(True, message)


def wrong(message: str, hint: str = "") -> Judgement:
    return Judgement(False, message, hint)


def same_number(a: float | Fraction, b: float | Fraction, tolerance: float = 1e-9) -> bool:
    """Equal up to the rounding of sums of floats (simulated times)."""
    return abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(b)))


class LearnerCodeError(Exception):
    """A function the learner wrote raised; the message says which and where, in one line."""


def call_learner(function: Callable, *args: object, **keywords: object) -> object:
    """Call a learner's function; turn what it raises into one readable line, not a traceback."""
    name = getattr(function, "__name__", "your function")
    try:
        return function(*args, **keywords)
    except NotImplementedError:
        raise LearnerCodeError(f"{name} is not written yet: replace its `raise "
                               f"NotImplementedError` with your code") from None
    except Exception as error:  # the learner's code may raise anything; say what and where
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (line {frames[-1].lineno} of your code)" if len(frames) > 1 else ""
        shown = ", ".join([*(repr(a) for a in args),
                           *(f"{k}={v!r}" for k, v in keywords.items())])
        raise LearnerCodeError(f"{name}({shown}) raised {type(error).__name__}: "
                               f"{str(error)[:200]}{where}") from None


@dataclass(frozen=True)
class Exercise:
    """Questions in parts, asked with numbers drawn for each learner by ``draw``."""

    id: str
    title: str
    lesson: str  # the lesson folder that teaches it (lessons/NN-name)
    intro: str
    draw: Callable[[random.Random], dict]
    parts: tuple  # of pplab.exercises.parts.Part
    figure: str = ""  # shown as it is after the intro (a schedule's rows), with the numbers
    kind: ClassVar[str] = "questions"

    @property
    def part_keys(self) -> tuple[str, ...]:
        return tuple(part.key for part in self.parts)

    def part(self, key: str):
        for part in self.parts:
            if part.key == key:
                return part
        raise BadAnswer(f"{self.id} has parts {', '.join(self.part_keys)}, not {key!r}")

    def variant(self, learner: str, course: str | None = None) -> Variant:
        course = course_key(course)
        seed = variant_seed(self.id, learner, course)
        numbers = self.draw(random.Random(seed))
        return Variant(self.id, learner_key(learner), course, seed, MappingProxyType(numbers))

    def show(self, learner: str, course: str | None = None) -> str:
        """The exercise as the learner reads it, with their numbers and how to answer."""
        variant = self.variant(learner, course)
        lines = [f"{self.title} (exercise {self.id}, for {variant.learner})", "",
                 *textwrap.wrap(self.intro.format(**variant.numbers), SHOW_WIDTH), ""]
        if self.figure:
            lines += [*self.figure.format(**variant.numbers).splitlines(), ""]
        for part in self.parts:
            question, *options = part.question(variant).splitlines()
            lines += [*textwrap.wrap(f"({part.key}) {question}", SHOW_WIDTH,
                                     subsequent_indent="    "),
                      *options, f"    answer: {part.how_to_answer(variant)}", ""]
        return "\n".join(lines).rstrip()


EXERCISES: dict[str, object] = {}


def register(exercise):
    """Add an exercise (or a coding lab) to the list ``pplab exercise list`` shows."""
    EXERCISES[exercise.id] = exercise
    return exercise


def get_exercise(exercise_id: str):
    try:
        return EXERCISES[exercise_id]
    except KeyError:
        raise BadAnswer(f"unknown exercise {exercise_id!r}; choose one of "
                        f"{', '.join(EXERCISES)}") from None
