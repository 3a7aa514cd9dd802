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
from app_helpers import text_blocks
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


def fenced_blocks(markdown: str) -> list[str]:
    """The text inside each ``` fence of ``markdown``, read line by line."""
    blocks, inside = [], None
    for line in markdown.splitlines():
        if line.startswith("```") and inside is None:
            inside = []
        elif line.startswith("```"):
            blocks.append("\n".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


def shown_text(app: AppTest) -> str:
    return "\n".join(str(m.value) for m in app.markdown)


def answer_box(exercise_id: str, part: str, learner: str) -> str:
    return f"lesson_answer_{exercise_id}_{part}_{learner}"


def submit(app: AppTest, box: str, answer: str, choice: bool = False) -> AppTest:
    """Type or pick ``answer`` in a part's form, then press its Check button."""
    (app.radio(key=box).set_value(answer) if choice else app.text_input(key=box).input(answer))
    app.button(key=f"{box}_check").click().run()
    assert not app.exception, app.exception
    return app


def test_the_page_asks_for_a_name_before_it_shows_numbers(lessons_page):
    app = lessons_page
    assert app.markdown[0].value.startswith("# Lesson 1: the bubble")
    assert any("Type your name" in info.value for info in app.info)
    assert not app.text_input(key="lesson_learner").value


@pytest.mark.slow  # a page flow
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
    submit(app, answer_box("bubble", "a", "ada"), wrong_m)
    assert app.warning and not app.success
    assert right["a"] not in {word.strip(".,:;()%") for word in app.warning[0].value.split()}
    submit(app, answer_box("bubble", "a", "ada"), right["a"])
    assert app.success[0].value.startswith(f"right: m = {right['a']}")
    submit(app, answer_box("bubble", "b", "ada"), right["b"], choice=True)
    submit(app, answer_box("bubble", "c", "ada"), right["c"])
    assert len(app.success) == 3 and not app.warning
    submit(app, answer_box("bubble", "c", "ada"), "p/(")
    assert any("Cannot read it" in w.value for w in app.warning)


@pytest.mark.slow  # a page flow: the fast lane submits answers in the test above
def test_a_choice_is_judged_once_when_submitted_not_at_every_click(lessons_page, tmp_path):
    from pplab.exercises import AttemptBook

    app = pick(lessons_page, "01-the-bubble", "ada")
    box = answer_box("bubble", "b", "ada")
    options = [name for name, _ in get_exercise("bubble").part("b").options]
    for name in options[:3]:  # clicking around judges nothing and counts no try
        app.radio(key=box).set_value(name).run()
    assert not app.success and not app.warning
    book = AttemptBook(tmp_path / "home" / "exercise-attempts.json")
    assert book.tries("ada") == {}
    right = right_answers("bubble", numbers("bubble", "ada"))["b"]
    submit(app, box, right, choice=True)
    assert len(app.success) == 1 and book.tries("ada") == {"bubble": {"b": 1}}
    app.run()  # a rerun shows the verdict again without judging it again
    assert len(app.success) == 1 and book.tries("ada") == {"bubble": {"b": 1}}


@pytest.mark.slow  # a page flow
def test_the_coding_labs_show_how_to_start(lessons_page):
    for lesson, skeleton in (("04-write-your-own-schedule", "my_schedules.py"),
                             ("04a-write-your-own-runtime", "my_runtime.py")):
        app = pick(lessons_page, lesson, "ada")
        assert any(skeleton in block for block in text_blocks(app)), lesson
        assert not app.exception


LESSON_NAMES = [lesson.name for lesson in find_lessons()]


def path_of(app: AppTest) -> list[str]:
    """The sidebar's path, one step per lesson, as it reads."""
    return list(app.sidebar.radio(key="lesson_path").options)


def test_each_step_of_the_path_opens_its_lesson(lessons_page):
    app = lessons_page
    path = app.sidebar.radio(key="lesson_path")
    assert len(path.options) == len(LESSON_NAMES) and path.value.name == LESSON_NAMES[0]
    path.set_value(next(lesson.folder for lesson in find_lessons()
                        if lesson.name == LESSON_NAMES[2])).run()
    assert app.selectbox(key="lesson_pick").value.name == LESSON_NAMES[2]
    app.button(key="lesson_next").click().run()  # the path follows the lesson picked elsewhere
    assert app.sidebar.radio(key="lesson_path").value.name == LESSON_NAMES[3]
    assert any(t.startswith("0 of ") and "parts answered right" in t
               for t in [str(p.proto.text) for p in app.sidebar.get("progress")]), \
        "the count says of how many, in a sentence"


def _in_the_fast_lane_unless_tested_apart(name: str):
    """A lesson with a test file of its own (tests/test_lesson_NN_*.py) has its widget drawn
    there in the fast lane; here it runs in the whole suite only. Of the others, the fast
    lane walks the first lesson (a page flow costs about a second), the whole suite each."""
    own = list(Path(__file__).parent.glob(f"test_lesson_{name[:2]}_*.py"))
    return pytest.param(name, marks=pytest.mark.slow if own or name != LESSON_NAMES[0] else ())


@pytest.mark.parametrize("name", [_in_the_fast_lane_unless_tested_apart(n) for n in LESSON_NAMES])
def test_every_lesson_shows_objectives_its_widget_and_takes_the_right_answer(lessons_page,
                                                                            name):
    """The guided path: objectives at the top, the lesson's own widget embedded, and its
    exercise accepting the reference answer part by part (the coding lab takes a file, which
    AppTest cannot upload: tests/test_schedule_lab.py grades that path)."""
    from lesson_widgets import widget_for

    app = pick(lessons_page, name, "ada")
    lesson = next(lesson for lesson in find_lessons() if lesson.name == name)
    assert lesson.objectives, "a lesson says what it teaches under 'You will learn'"
    assert any("You will learn" in str(m.value) and lesson.objectives[0] in str(m.value)
               for m in app.markdown)
    assert widget_for(name) is not None, f"{name} has no widget in app/lesson_widgets"
    assert any(s.value == "Try it" for s in app.subheader)
    assert not app.error, [e.value for e in app.error]
    # the commands a lesson asks you to type, as written, in fixed-width blocks
    assert set(fenced_blocks(lesson.text)) <= set(text_blocks(app))
    assert not any("```" in str(m.value) for m in app.markdown)
    assert any(f"lesson={name}" in c.value for c in app.caption), "no link to this view"
    if not any(e.kind == "questions" for e in lesson.exercises):
        return
    position = LESSON_NAMES.index(name) + 1
    assert not any(step.startswith(f"✓ {position}.") for step in path_of(app))
    questions = [e for e in lesson.exercises if e.kind == "questions"]
    for exercise in questions:
        right = right_answers(exercise.id, numbers(exercise.id, "ada"))
        for part in exercise.parts:
            submit(app, answer_box(exercise.id, part.key, "ada"), str(right[part.key]),
                   choice=part.kind == "choice")
    assert len(app.success) == sum(len(e.parts) for e in questions) and not app.warning, \
        [w.value for w in app.warning]
    if any(e.kind != "questions" for e in lesson.exercises):
        return  # a lesson with a coding lab is marked done once its file is on target
    assert any(step.startswith(f"✓ {position}.") for step in path_of(app)), \
        "the path marks the lesson done"


def test_a_link_opens_the_lesson_and_the_widget_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(str(ROOT / "app" / "lab.py"), default_timeout=120)
    app.query_params["lesson"] = "02-memory-gpipe-vs-1f1b"
    app.query_params["p"] = "6"
    app.query_params["m"] = "many"
    app.run()
    app.switch_page("views/lessons.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="lesson_pick").value.name == "02-memory-gpipe-vs-1f1b"
    assert app.slider(key="l02_p").value == 6
    assert app.slider(key="l02_m").value == 8  # "many" is not a number: the default, said so
    assert any("'many' is not a whole number" in c.value for c in app.caption)
    assert any("lesson=02-memory-gpipe-vs-1f1b&p=6&m=8" in c.value for c in app.caption)


@pytest.mark.slow  # a page flow: test_each_step_of_the_path_opens_its_lesson is fast
def test_next_and_previous_walk_the_path_in_order(lessons_page):
    app = lessons_page
    assert app.selectbox(key="lesson_pick").value.name == LESSON_NAMES[0]
    app.button(key="lesson_next").click().run()
    assert app.selectbox(key="lesson_pick").value.name == LESSON_NAMES[1]
    app.button(key="lesson_previous").click().run()
    assert app.selectbox(key="lesson_pick").value.name == LESSON_NAMES[0]
