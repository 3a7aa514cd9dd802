"""The kinds of question an exercise asks: a number, a choice, a schedule, a formula.

Each part reads an answer (``read``: ``BadAnswer`` when it cannot be read at all, before any
try counts) and hands it to its judge. A formula part may come in several *forms*, one drawn
for each learner (``numbers["form_<key>"]`` names it): the same idea asked about another
quantity or in other variables, so that a formula passed between learners answers nobody's
question but its author's.

    pplab exercise show bubble --learner ada
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from pplab.exercises.core import BadAnswer, Judgement, Variant
from pplab.exercises.formula import FormulaError, parse_formula
from pplab.limits import MAX_ANSWER_ACTIONS, MAX_ANSWER_CHARS
from pplab.schedules import Action


@dataclass(frozen=True)
class Part:
    """One question of an exercise; ``prompt`` is formatted with the learner's numbers."""

    key: str
    prompt: str
    judge: Callable[[Variant, object], Judgement]
    kind: ClassVar[str] = "part"

    def question(self, variant: Variant) -> str:
        return self.prompt.format(**variant.numbers)

    def how_to_answer(self, variant: Variant | None = None) -> str:
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

    def how_to_answer(self, variant: Variant | None = None) -> str:
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

    def how_to_answer(self, variant: Variant | None = None) -> str:
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

    def how_to_answer(self, variant: Variant | None = None) -> str:
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
class Form:
    """One way a formula part is asked: its question and the variables its answer is in."""

    key: str
    prompt: str
    variables: tuple[str, ...]


@dataclass(frozen=True)
class FormulaPart(Part):
    """A formula in the given variables (``(p-1)/(m+p-1)``), or a Python function of them.

    With ``forms``, each learner is asked one of them (``numbers["form_<key>"]``), and
    ``variables`` is every form's: a formula may name any, the judge takes the learner's own.
    """

    variables: tuple[str, ...] = ()
    forms: tuple[Form, ...] = ()
    kind: ClassVar[str] = "formula"

    def form(self, variant: Variant | None) -> Form | None:
        if not self.forms or variant is None:
            return None
        chosen = variant.numbers.get(f"form_{self.key}")
        return next((form for form in self.forms if form.key == chosen), self.forms[0])

    def variables_for(self, variant: Variant | None) -> tuple[str, ...]:
        form = self.form(variant)
        return form.variables if form else self.variables

    def question(self, variant: Variant) -> str:
        form = self.form(variant)
        return (form.prompt if form else self.prompt).format(**variant.numbers)

    def how_to_answer(self, variant: Variant | None = None) -> str:
        return (f"a formula in {', '.join(self.variables_for(variant))} with + - * / ** ( ) min "
                f"max ceil, quoted in a shell")

    def read(self, answer: object) -> Callable:
        if callable(answer):
            return answer
        try:
            return parse_formula(_text(answer), self.variables)
        except FormulaError as error:
            raise BadAnswer(str(error)) from None
