"""The exercise framework: one learner's numbers, questions in parts, and judgements.

An exercise is drawn for a learner. Its numbers (p, m, costs, the stage it asks about) come
from a seed that hashes the exercise id and the learner's name, so one learner gets the same
numbers every time and two learners rarely get the same ones: copying a neighbour's answer
does not work, understanding does. No answer is stored anywhere: each part has a *judge* that
runs the simulator on the learner's numbers when an answer comes in, and says why a wrong
answer is wrong without giving the right one away.

A part is one of four kinds: a number, a choice among named options, a schedule written in
pplab's action language (``2F0 2B0``), or a short formula that is evaluated on fresh values
(so it cannot be fitted to one figure read off the simulator). In a notebook a schedule or a
formula may also be given as a Python function.

    pplab exercise show bubble --learner ada
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import textwrap
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import ClassVar

from pplab.exercises.formula import FormulaError, parse_formula
from pplab.limits import MAX_ANSWER_ACTIONS, MAX_ANSWER_CHARS, MAX_LEARNER_NAME_CHARS
from pplab.schedules import Action

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


def call_learner(function: Callable, *args: object) -> object:
    """Call a learner's function; turn what it raises into one readable line, not a traceback."""
    name = getattr(function, "__name__", "your function")
    try:
        return function(*args)
    except NotImplementedError:
        raise LearnerCodeError(f"{name} is not written yet: replace its `raise "
                               f"NotImplementedError` with your code") from None
    except Exception as error:  # the learner's code may raise anything; say what and where
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (line {frames[-1].lineno} of your code)" if len(frames) > 1 else ""
        shown = ", ".join(repr(a) for a in args)
        raise LearnerCodeError(f"{name}({shown}) raised {type(error).__name__}: "
                               f"{str(error)[:200]}{where}") from None


@dataclass(frozen=True)
class Part:
    """One question of an exercise; ``prompt`` is formatted with the learner's numbers."""

    key: str
    prompt: str
    judge: Callable[[Variant, object], Judgement]
    kind: ClassVar[str] = "part"

    def question(self, variant: Variant) -> str:
        return self.prompt.format(**variant.numbers)

    def how_to_answer(self) -> str:
        return "an answer"

    def read(self, answer: object) -> object:
        """The answer as the judge takes it; BadAnswer when it cannot be read at all."""
        raise NotImplementedError


def _text(answer: object) -> str:
    text = str(answer).strip()
    if not text:
        raise BadAnswer("the answer is empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise BadAnswer(f"the answer is over {MAX_ANSWER_CHARS} characters")
    return text


@dataclass(frozen=True)
class NumberPart(Part):
    """A number: whole (``27``), or any ratio (``3``, ``2.5``, ``5/2``), with an optional unit."""

    whole: bool = False
    unit: str = ""
    low: float = 0
    high: float = 1e9
    kind: ClassVar[str] = "number"

    def how_to_answer(self) -> str:
        what = "a whole number" if self.whole else "a number (2, 2.5 or 5/2)"
        return f"{what}{f' of {self.unit}' if self.unit else ''}"

    def read(self, answer: object) -> Fraction:
        if isinstance(answer, bool):
            raise BadAnswer(f"{answer!r} is not {self.how_to_answer()}")
        if isinstance(answer, int | Fraction):
            value = Fraction(answer)
        elif isinstance(answer, float):
            if not math.isfinite(answer):
                raise BadAnswer(f"{answer!r} is not {self.how_to_answer()}")
            # a notebook's 16 / 3 arrives as 5.333...: the nearest simple fraction is meant
            value = Fraction(answer).limit_denominator(10**6)
        else:
            text = _text(answer)
            if self.unit and text.casefold().endswith(self.unit.casefold()):
                text = text[: -len(self.unit)].strip()
            try:
                value = Fraction(text)
            except (ValueError, ZeroDivisionError):
                raise BadAnswer(f"{str(answer).strip()!r} is not "
                                f"{self.how_to_answer()}") from None
        if self.whole and value.denominator != 1:
            raise BadAnswer(f"{value} is not a whole number")
        if not self.low <= value <= self.high:
            raise BadAnswer(f"{value} is not a possible answer here: give one from "
                            f"{self.low:,.0f} to {self.high:,.0f}")
        return value


@dataclass(frozen=True)
class ChoicePart(Part):
    """One of a few named options, answered by its name (``fewer-stages``)."""

    options: tuple[tuple[str, str], ...] = ()
    kind: ClassVar[str] = "choice"

    def question(self, variant: Variant) -> str:
        lines = [super().question(variant)]
        lines += [f"    {name}: {text.format(**variant.numbers)}" for name, text in self.options]
        return "\n".join(lines)

    def how_to_answer(self) -> str:
        return "one of " + ", ".join(name for name, _ in self.options)

    def read(self, answer: object) -> str:
        name = _text(answer).casefold()
        if name not in {option for option, _ in self.options}:
            raise BadAnswer(f"{str(answer).strip()!r} is not {self.how_to_answer()}")
        return name


@dataclass(frozen=True)
class SchedulePart(Part):
    """A rank's order of actions (``1F0 1F1 1B0 ...``), or a function that returns it."""

    kind: ClassVar[str] = "schedule"

    def how_to_answer(self) -> str:
        return "actions in order, separated by spaces, such as 1F0 1F1 1B0"

    def read(self, answer: object) -> tuple[Action, ...] | Callable:
        if callable(answer):
            return answer
        return read_actions(answer)


def read_actions(answer: object) -> tuple[Action, ...]:
    """``"1F0 1F1, 1B0"`` or a list of actions or their texts, as Actions; BadAnswer if not."""
    if isinstance(answer, str):
        cells = [c for c in re.split(r"[\s,]+", _text(answer)) if c]
    elif isinstance(answer, list | tuple):
        cells = [str(c) for c in answer]
    else:
        raise BadAnswer(f"a schedule is a list of actions such as 1F0, got {type(answer).__name__}")
    if len(cells) > MAX_ANSWER_ACTIONS:
        raise BadAnswer(f"{len(cells)} actions is more than this question needs")
    try:
        return tuple(Action.parse(cell) for cell in cells)
    except ValueError as error:
        raise BadAnswer(str(error)) from None


@dataclass(frozen=True)
class FormulaPart(Part):
    """A formula in the given variables (``(p-1)/(m+p-1)``), or a Python function of them."""

    variables: tuple[str, ...] = ()
    kind: ClassVar[str] = "formula"

    def how_to_answer(self) -> str:
        return (f"a formula in {', '.join(self.variables)} with + - * / ** ( ) min max ceil, "
                f"quoted in a shell")

    def read(self, answer: object) -> Callable:
        if callable(answer):
            return answer
        try:
            return parse_formula(_text(answer), self.variables)
        except FormulaError as error:
            raise BadAnswer(str(error)) from None


@dataclass(frozen=True)
class Exercise:
    """Questions in parts, asked with numbers drawn for each learner by ``draw``."""

    id: str
    title: str
    lesson: str  # the lesson folder that teaches it (lessons/NN-name)
    intro: str
    draw: Callable[[random.Random], dict]
    parts: tuple[Part, ...]
    kind: ClassVar[str] = "questions"

    @property
    def part_keys(self) -> tuple[str, ...]:
        return tuple(part.key for part in self.parts)

    def part(self, key: str) -> Part:
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
        for part in self.parts:
            question, *options = part.question(variant).splitlines()
            lines += [*textwrap.wrap(f"({part.key}) {question}", SHOW_WIDTH,
                                     subsequent_indent="    "),
                      *options, f"    answer: {part.how_to_answer()}", ""]
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
