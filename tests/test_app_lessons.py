"""The Lessons page asks for a name, shows that learner's numbers and checks their answers.

The page is a thin face over ``pplab.exercises``: the numbers it shows are the ones
``pplab exercise show`` prints for the same name, a right answer (worked out independently in
tests/exercise_solutions.py) gets a success, a wrong one a warning that does not give the
answer away, and an unreadable one a warning saying so.

    .venv/bin/python -m pytest -q tests/test_app_lessons.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_solutions import right_answers
from streamlit.testing.v1 import AppTest

from pplab.exercises import find_lessons, get_exercise, numbers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lessons_page(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(str(ROOT / "app" / "lab.py"), default_timeout=120).run()
    app.switch_page("views/lessons.py").run()
    assert not app.exception, app.exception
    return app


def pick(app: AppTest, lesson_name: str, learner: str) -> AppTest:
    lesson = next(lesson for lesson in find_lessons() if lesson.name == lesson_name)
    app.selectbox(key="lesson_pick").set_value(lesson.folder).run()
    app.text_input(key="lesson_learner").input(learner).run()
    assert not app.exception, app.exception
    return app


def shown_text(app: AppTest) -> str:
    return "\n".join(str(m.value) for m in app.markdown)


def answer_box(exercise_id: str, part: str, learner: str) -> str:
    return f"lesson_answer_{exercise_id}_{part}_{learner}"


def test_the_page_asks_for_a_name_before_it_shows_numbers(lessons_page):
    app = lessons_page
    assert app.markdown[0].value.startswith("# Lesson 1: the bubble")
    assert any("Type your name" in info.value for info in app.info)
    assert not app.text_input(key="lesson_learner").value


def test_each_learner_sees_their_own_numbers(lessons_page):
    app = pick(lessons_page, "02-memory-gpipe-vs-1f1b", "ada")
    exercise = get_exercise("memory")
    ada, bob = numbers("memory", "ada"), numbers("memory", "bob")
    assert ada != bob
    question = exercise.part("a").question(exercise.variant("ada"))
    assert question in shown_text(app)
    pick(app, "02-memory-gpipe-vs-1f1b", "bob")
    assert exercise.part("a").question(exercise.variant("bob")) in shown_text(app)
    assert question not in shown_text(app)


def test_the_page_accepts_the_right_answer_and_refuses_a_wrong_one(lessons_page):
    app = pick(lessons_page, "01-the-bubble", "ada")
    right = right_answers("bubble", numbers("bubble", "ada"))
    wrong_m = str(int(right["a"]) + 4)
    app.text_input(key=answer_box("bubble", "a", "ada")).input(wrong_m).run()
    assert app.warning and not app.success
    assert right["a"] not in {word.strip(".,:;()%") for word in app.warning[0].value.split()}
    app.text_input(key=answer_box("bubble", "a", "ada")).input(right["a"]).run()
    assert app.success[0].value.startswith(f"right: m = {right['a']}")
    app.radio(key=answer_box("bubble", "b", "ada")).set_value(right["b"]).run()
    app.text_input(key=answer_box("bubble", "c", "ada")).input(right["c"]).run()
    assert len(app.success) == 3 and not app.warning
    app.text_input(key=answer_box("bubble", "c", "ada")).input("p/(").run()
    assert any("Cannot read it" in w.value for w in app.warning)


def test_the_coding_lab_shows_how_to_start(lessons_page):
    app = pick(lessons_page, "04-write-your-own-schedule", "ada")
    assert any("my_schedules.py" in str(code.value) for code in app.code)
    assert not app.exception
