"""Every lesson after the first: its notebook runs top to bottom, its checker tells right from
wrong by running the simulator, and its shell entry refuses junk in one line.

Lesson 1 is tested with the app in tests/test_app.py. A new lesson folder must add a right
answer and some wrong ones to ANSWERS below, or its test fails and says so.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (ROOT / "lessons").glob("[0-9][0-9]-*")
                 if (p / "README.md").is_file() and not p.name.startswith("01-"))

# folder: (right answers, wrong answers); typed the way a learner would, as text.
ANSWERS = {
    "02-memory-gpipe-vs-1f1b": (["3", " 3 ", "3.0", "12/4"], ["2", "4", "1", "2.4", "5"]),
    "03-zero-bubble": (["6", "6.0", " 6 cost units"], ["0", "3", "18", "7", "-6"]),
}


def load_exercise(folder: Path):
    spec = importlib.util.spec_from_file_location(f"exercise_{folder.name}", folder / "exercise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ids(folder: Path) -> str:
    return folder.name


def test_there_are_lessons_to_test():
    assert LESSONS, "no lessons/NN-*/ folders besides lesson 1"


@pytest.mark.parametrize("folder", LESSONS, ids=ids)
def test_lesson_has_text_exercise_and_notebook(folder):
    text = (folder / "README.md").read_text()
    assert text.startswith("# Lesson "), "the Lessons page shows README.md's heading first"
    assert "## Exercise" in text
    assert (folder / "exercise.py").is_file() and (folder / "lesson.ipynb").is_file()
    assert "import torch" not in (folder / "exercise.py").read_text()


@pytest.mark.parametrize("folder", LESSONS, ids=ids)
def test_lesson_notebook_runs_top_to_bottom(folder, monkeypatch):
    notebook = json.loads((folder / "lesson.ipynb").read_text())
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "exercise", raising=False)
    namespace: dict = {}
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert cells, "the notebook has no code cells"
    for number, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"lesson.ipynb code cell {number}", "exec"),
             namespace)
    assert Path(namespace["check"].__globals__["__file__"]).parent == folder
    assert namespace["figure"].data


@pytest.mark.parametrize("folder", LESSONS, ids=ids)
def test_check_accepts_the_right_answer_and_refuses_wrong_ones(folder):
    assert folder.name in ANSWERS, f"add right and wrong answers for {folder.name} to ANSWERS"
    exercise = load_exercise(folder)
    assert isinstance(exercise.QUESTION, str) and exercise.QUESTION.endswith("?")
    right, wrong = ANSWERS[folder.name]
    for answer in right:
        ok, message = exercise.check(answer)
        assert ok, (answer, message)
        assert message.startswith("right") and "\n" not in message
    for answer in wrong + ["junk", "", "1/0"]:
        ok, message = exercise.check(answer)
        assert not ok, answer
        assert message and "\n" not in message, (answer, message)


@pytest.mark.parametrize("folder", LESSONS, ids=ids)
def test_exercise_from_the_shell(folder):
    assert folder.name in ANSWERS, f"add right and wrong answers for {folder.name} to ANSWERS"

    def shell(*args):
        return subprocess.run([sys.executable, str(folder / "exercise.py"), *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    junk = shell("junk")
    assert junk.returncode == 2
    assert junk.stderr.count("\n") == 1 and "Traceback" not in junk.stderr
    assert shell().returncode == 2
    right, wrong = ANSWERS[folder.name]
    assert shell(right[0]).returncode == 0
    done = shell(wrong[0])
    assert done.returncode == 1 and done.stdout.count("\n") == 1


def test_lessons_page_shows_each_lesson_and_checks_its_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "empty"))
    app = AppTest.from_file(str(ROOT / "app" / "lab.py"), default_timeout=120).run()
    app.switch_page("views/lessons.py").run()
    for folder in LESSONS:
        app.selectbox(key="lesson_pick").set_value(folder).run()
        assert not app.exception, app.exception
        heading = (folder / "README.md").read_text().splitlines()[0]
        assert app.markdown[0].value.startswith(heading)
        right, wrong = ANSWERS[folder.name]
        app.text_input(key=f"lesson_answer_{folder.name}").input(wrong[0]).run()
        assert app.warning and not app.success
        app.text_input(key=f"lesson_answer_{folder.name}").input(right[0]).run()
        assert app.success[0].value.startswith("right")
