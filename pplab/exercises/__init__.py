"""Exercises that measure understanding: per-learner numbers, answers judged by the simulator.

One framework serves the app's Lessons page, the notebooks and ``pplab exercise``. Every
exercise is drawn for a learner (a seed from the learner's name and the exercise id), asks
in several parts (a number, a choice, a schedule, a formula checked at fresh values), and
judges an answer by running the simulator at check time: no answer is stored in the package
or in a lesson folder. The coding lab ``schedule-lab`` grades a file of schedule builders run
in the guard's child process, which cannot reach pplab (``guard``); ``report`` grades a
folder of learners' submissions, their tries included.

    pplab exercise list
    pplab exercise show bubble --learner ada
    pplab exercise check bubble --learner ada 27 fewer-stages "p/b"

In a notebook::

    from pplab import exercises
    print(exercises.show("bubble", "ada"))
    exercises.grade("bubble", "ada", {"a": 27, "b": "fewer-stages", "c": my_formula})
"""

# isort: off
# Imported for their register() side effect, in the order `pplab exercise list` shows them.
from pplab.exercises import bubble, memory, zero_bubble, schedule_lab, repair  # noqa: F401
from pplab.exercises import stage_split, interleaving, staleness, parallel_wire  # noqa: F401
from pplab.exercises import gpt3_3d, measured_vs_predicted, overlapping_steps  # noqa: F401
from pplab.exercises import runtime_lab  # noqa: F401
# isort: on
from pplab.exercises.attempts import NUMERIC_HINTS, AttemptBook
from pplab.exercises.checking import PLACEHOLDER_LEARNER, Report, Verdict, check, grade
from pplab.exercises.core import (
    COURSE_ENV,
    EXERCISES,
    LEARNER_ENV,
    BadAnswer,
    Exercise,
    get_exercise,
    learner_key,
    variant_seed,
)
from pplab.exercises.lessons import Lesson, find_lessons


def show(exercise_id: str, learner: str, course: str | None = None) -> str:
    """The exercise as ``learner`` reads it: their numbers, each part, how to answer."""
    return get_exercise(exercise_id).show(learner, course)


def numbers(exercise_id: str, learner: str, course: str | None = None) -> dict:
    """The learner's numbers of a question exercise (p, m, costs...), e.g. for a notebook."""
    return dict(get_exercise(exercise_id).variant(learner, course).numbers)


__all__ = ["EXERCISES", "Exercise", "BadAnswer", "AttemptBook", "Report", "Verdict", "Lesson",
           "check", "grade", "show", "numbers", "get_exercise", "find_lessons", "learner_key",
           "variant_seed", "NUMERIC_HINTS", "PLACEHOLDER_LEARNER", "LEARNER_ENV", "COURSE_ENV"]
