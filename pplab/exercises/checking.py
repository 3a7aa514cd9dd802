"""Checking answers: parts labelled, read, judged, hints counted; the notebook's grader.

``check`` is what the command line and the app call: it refuses an answer it cannot read
(``BadAnswer``, exit 2) before judging anything, then judges each part given and records the
try in the learner's ``AttemptBook`` (there is no uncounted way through it) so numeric hints
run out and the tries are handed in; past a course's cap (``PPLAB_MAX_TRIES``) a new answer
is not judged. ``grade`` is the notebook's grader, counted the same way: it never raises for
the learner's mistakes (an unanswered part, a function still raising ``NotImplementedError``,
a typo) but says each in one line, so a notebook runs top to bottom with the skeleton and
with a solution alike. A notebook holds pplab and could call a part's judge itself: the
count a grade can trust is one kept where the learner cannot write, an attempts file on a
machine the instructor runs (``pplab exercise report --attempts``).

    pplab exercise check bubble --learner ada a=27 b=fewer-stages "c=p/b"
"""

from __future__ import annotations

import hashlib
import marshal
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pplab.exercises.attempts import NUMERIC_HINTS, AttemptBook, max_tries
from pplab.exercises.core import BadAnswer, Exercise, Variant, get_exercise, learner_key

PLACEHOLDER_LEARNER = "your-name"
_LABELLED = re.compile(r"^\s*([a-z])\s*=(.*)$", re.S)


@dataclass(frozen=True)
class Verdict:
    """What the checker says about one part, in one line."""

    part: str
    right: bool
    message: str
    answered: bool = True

    def line(self) -> str:
        return f"({self.part}) {'' if self.right else 'wrong: '}{self.message}"


def label_answers(exercise: Exercise, answers: Mapping | Sequence) -> dict[str, object]:
    """{part: answer} from a mapping, or from answers in part order, or all as ``KEY=ANSWER``."""
    keys = exercise.part_keys
    if isinstance(answers, Mapping):
        unknown = [k for k in answers if k not in keys]
        if unknown:
            raise BadAnswer(f"{exercise.id} has parts {', '.join(keys)}, not {unknown[0]!r}")
        return dict(answers)
    items = list(answers)
    matches = [_LABELLED.match(str(item)) for item in items]
    labelled = [m is not None and m.group(1) in keys for m in matches]
    if items and all(labelled):
        found: dict[str, object] = {}
        for match in matches:
            if match.group(1) in found:
                raise BadAnswer(f"part {match.group(1)} is answered twice")
            found[match.group(1)] = match.group(2)
        return found
    if any(labelled):
        raise BadAnswer("label every answer (a=27 b=...) or none (answers in part order)")
    if len(items) > len(keys):
        raise BadAnswer(f"{exercise.id} has {len(keys)} parts ({', '.join(keys)}); got "
                        f"{len(items)} answers (quote an answer that holds spaces)")
    return dict(zip(keys, items, strict=False))


def answer_text(answer: object) -> str:
    """How a try is remembered: the text, or a function by its name and its code's hash."""
    code = getattr(answer, "__code__", None)
    if code is not None:
        digest = hashlib.sha256(marshal.dumps(code)).hexdigest()[:12]
        return f"function {getattr(answer, '__name__', '?')} {digest}"
    return " ".join(str(answer).split())


def judge_part(exercise: Exercise, variant: Variant, key: str, answer: object,
               book: AttemptBook | None, cap: int | None = None) -> Verdict:
    """Judge one part; with a ``book``, record the try and add a numeric hint while any are
    left. Without one (an instructor's grading) no hint is given."""
    part = exercise.part(key)
    value = part.read(answer)
    if book is not None and book.used_up(variant.learner, exercise.id, key, answer_text(answer),
                                         cap):
        return Verdict(key, False, f"not judged: this course allows {cap} tries of each part, "
                                   f"and you have used them on ({key})")
    judgement = part.judge(variant, value)
    message = judgement.message
    if book is not None:
        hint = book.try_answer(variant.learner, exercise.id, key, answer_text(answer),
                               judgement.right, bool(judgement.hint))
        if book.problem:  # say so, rather than count nothing and pretend
            message += f" (this try was not recorded, and no hint is given: {book.problem})"
        elif not judgement.right and judgement.hint:
            message += (f" (hint {hint} of {NUMERIC_HINTS}: {judgement.hint})" if hint else
                        " (no numeric hints left: work it out from the lesson)")
    return Verdict(key, judgement.right, message)


def check(exercise: Exercise, learner: str, answers: Mapping | Sequence, *,
          course: str | None = None, book: AttemptBook | None = None) -> list[Verdict]:
    """Judge the parts answered, each try counted in ``book`` (default: this machine's) up to
    the course's cap ($PPLAB_MAX_TRIES); BadAnswer, before anything is judged, for an answer
    that cannot be read."""
    variant = exercise.variant(learner, course)
    book = AttemptBook() if book is None else book
    cap = max_tries()
    labelled = label_answers(exercise, answers)
    if not labelled:
        raise BadAnswer(f"give an answer for each part of {exercise.id} "
                        f"({', '.join(exercise.part_keys)}), in order or as a=...")
    for key, answer in labelled.items():
        exercise.part(key).read(answer)
    return [judge_part(exercise, variant, key, answer, book, cap)
            for key, answer in sorted(labelled.items())]


@dataclass
class Report:
    """A notebook grader's answer: one line per part and a total; prints as text."""

    exercise_id: str
    learner: str
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(v.right for v in self.verdicts)

    @property
    def all_right(self) -> bool:
        return bool(self.verdicts) and self.points == len(self.verdicts)

    def __str__(self) -> str:
        lines = [*self.notes, *(v.line() for v in self.verdicts)]
        lines.append(f"{self.points} of {len(self.verdicts)} parts right"
                     + (": well done" if self.all_right else ""))
        return "\n".join(lines)

    __repr__ = __str__  # the last expression of a notebook cell shows as this text


def grade(exercise_id: str, learner: str, answers: Mapping, *, course: str | None = None,
          book: AttemptBook | None = None) -> Report:
    """The notebook's grader cell: every part judged or explained, nothing raised."""
    exercise = get_exercise(exercise_id)
    report = Report(exercise_id, str(learner))
    try:
        variant = exercise.variant(learner, course)
    except BadAnswer as error:
        report.notes.append(f"set LEARNER first: {error}")
        return report
    if variant.learner == PLACEHOLDER_LEARNER:
        report.notes.append("LEARNER is still 'your-name': set it to the name you hand in "
                            "with, or your numbers are someone else's")
    book = book if book is not None else AttemptBook()
    cap = max_tries()
    for key in exercise.part_keys:
        answer = answers.get(key) if isinstance(answers, Mapping) else None
        if answer is None:
            report.verdicts.append(Verdict(key, False, f"not answered yet: set answers[{key!r}]",
                                           answered=False))
            continue
        try:
            report.verdicts.append(judge_part(exercise, variant, key, answer, book, cap))
        except BadAnswer as error:
            report.verdicts.append(Verdict(key, False, f"cannot read it: {error}"))
    return report


__all__ = ["Verdict", "Report", "check", "grade", "label_answers", "judge_part", "answer_text",
           "learner_key", "PLACEHOLDER_LEARNER"]
