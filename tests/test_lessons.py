"""Every lesson works, and every command the docs print runs as printed after the Quickstart.

A lesson is a folder ``lessons/NN-name/`` (``pplab.exercises.find_lessons``): its text, a
notebook that runs top to bottom, and an exercise in the package (never in the folder, which
holds no answer). Each notebook runs on a real kernel twice as shipped, where its grader cell
explains in a few lines that the answers are not written yet, and once with the reference
solutions of tests/exercise_solutions.py (and tests/schedule_lab_solution.py) typed into its
answer cell, where the grader says all is right.

The commands in README.md, in each lesson and in data/*/README.md are read back and run (the
quick ones) or parsed (training, the lab, grade reports), from a folder laid out like the
repository: a renamed flag, a missing example file or a bare ``pplab`` that only works in an
activated environment shows here.

    .venv/bin/python -m pytest -q tests/test_lessons.py
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from exercise_solutions import notebook_cell, right_answers

from pplab.cli import main as cli
from pplab.exercises import Lesson, find_lessons, numbers

ROOT = Path(__file__).resolve().parents[1]
LESSONS = find_lessons()
ANSWER_TAG = "answer"  # the notebook cell a learner writes in
LAB_SOLUTION = ROOT / "tests" / "schedule_lab_solution.py"


def ids(lesson: Lesson) -> str:
    return lesson.name


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """Hint counts and runs go to fresh folders (the notebooks' kernels inherit them)."""
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("PPLAB_LEARNER", raising=False)


def test_the_lessons_are_the_ones_in_the_checkout():
    assert [lesson.folder for lesson in LESSONS] == sorted(
        p for p in (ROOT / "lessons").glob("[0-9][0-9]*-*") if (p / "README.md").is_file())
    assert len(LESSONS) >= 4


def _answer_cells(lesson: Lesson) -> list:
    import nbformat

    notebook = nbformat.read(lesson.notebook, as_version=4)
    return [c for c in notebook.cells if ANSWER_TAG in c.metadata.get("tags", [])]


@pytest.mark.parametrize("lesson", LESSONS, ids=ids)
def test_lesson_has_text_exercise_and_notebook(lesson):
    assert lesson.text.startswith("# Lesson "), "the Lessons page shows README.md's heading"
    assert lesson.title and "## Exercise" in lesson.text
    assert lesson.notebook.is_file() and lesson.exercise is not None
    assert len(_answer_cells(lesson)) == 1, f"tag the learner's cell {ANSWER_TAG!r}"
    assert f"pplab exercise show {lesson.exercise.id}" in lesson.text
    if lesson.exercise.id != "runtime-lab":  # the one lab written on torch.distributed
        for code in lesson.folder.glob("*.py"):
            assert "import torch" not in code.read_text()


@pytest.mark.parametrize("lesson", LESSONS, ids=ids)
def test_no_lesson_file_holds_an_answer(lesson):
    """The formulas asked for are derived, not printed; the answers live in the tests."""
    assert not (lesson.folder / "exercise.py").exists()
    text = "".join(p.read_text() for p in lesson.folder.iterdir() if p.is_file())
    squeezed = re.sub(r"\s+", "", text).casefold()
    if lesson.exercise.kind == "questions":
        # learner-0: the learner other files' fast tests draw too (a new learner of
        # measured-vs-predicted calibrates bundled runs: seconds)
        answers = right_answers(lesson.exercise.id, numbers(lesson.exercise.id, "learner-0"))
        for part in lesson.exercise.parts:
            if part.kind == "formula":
                formula = re.sub(r"\s+", "", str(answers[part.key])).casefold()
                assert formula not in squeezed
    elif lesson.exercise.id == "runtime-lab":
        from solutions_runtime import SOLUTION

        assert "def blocking_step" in text
        assert re.sub(r"\s+", "", SOLUTION).casefold() not in squeezed
    else:
        assert "def gpipe" in text and LAB_SOLUTION.read_text() not in text


def _run_notebook(lesson: Lesson, answer_cell: str | None = None) -> list:
    """Execute the notebook on a real Jupyter kernel started in the lesson's own folder,
    with ``answer_cell`` typed into the learner's cell when given."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(lesson.notebook, as_version=4)
    if answer_cell is not None:
        (cell,) = [c for c in notebook.cells if ANSWER_TAG in c.metadata.get("tags", [])]
        cell.source = answer_cell
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(lesson.folder)}}).execute()
    return [_stable(cell.get("outputs", [])) for cell in notebook.cells
            if cell.cell_type == "code"]


def _stable(outputs: list) -> list:
    """A cell's outputs without what differs between identical runs: plotly's random ids, and
    where the kernel happened to cut a stream of printed text into messages."""
    kept: list = []
    for output in outputs:
        if output.get("output_type") == "stream":
            if kept and kept[-1][0] == "stream" and kept[-1][1] == output.get("name"):
                kept[-1] = ("stream", output.get("name"), kept[-1][2] + output.get("text", ""))
            else:
                kept.append(("stream", output.get("name"), output.get("text", "")))
            continue
        data = {k: v for k, v in output.get("data", {}).items() if "plotly" not in k
                and k != "text/html"}
        kept.append((output.get("output_type"), output.get("ename"), data))
    return kept


def _grader_says(cells: list) -> str:
    """What the notebook's grader printed (its last cell that speaks of parts or schedules)."""
    said = [str(o[2].get("text/plain", "")) if o[0] == "execute_result" else str(o[2])
            for cell in cells for o in cell]
    graded = [text for text in said if "parts right" in text or "schedules on target" in text
              or "runs right" in text]
    assert graded, "the notebook has no grader cell"
    return graded[-1]


@pytest.mark.slow  # each notebook simulates grids of schedules for its plots, on a kernel
@pytest.mark.parametrize("lesson", LESSONS, ids=ids)
def test_lesson_notebook_runs_top_to_bottom_twice_alike(lesson):
    first = _run_notebook(lesson)
    assert first, "the notebook has no code cells"
    errors = [o for cell in first for o in cell if o[0] == "error"]
    assert not errors, errors
    assert _run_notebook(lesson) == first, "a second run printed something else"
    said = _grader_says(first)
    # The questions' and the runtime lab's skeletons raise NotImplementedError; the schedule
    # lab's runs forwards only, so the grader names the first backward missing.
    expected = "0B0" if lesson.exercise.id == "schedule-lab" else "not written yet"
    assert expected in said and "well done" not in said, said
    assert "Traceback" not in said and len(said.splitlines()) < 40


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=ids)
def test_lesson_notebook_with_the_reference_solution_is_graded_right(lesson):
    solution = notebook_cell(lesson)
    cells = _run_notebook(lesson, answer_cell=solution)
    errors = [o for cell in cells for o in cell if o[0] == "error"]
    assert not errors, errors
    assert "well done" in _grader_says(cells)


@pytest.mark.parametrize("lesson", LESSONS, ids=ids)
def test_each_lesson_shows_its_exercise_for_a_learner(lesson):
    shown = lesson.exercise.show("learner-0")  # see test_no_lesson_file_holds_an_answer
    assert lesson.exercise.title in shown and "\n\n" in shown
    if lesson.exercise.kind == "questions":
        assert all(f"({key})" in shown for key in lesson.exercise.part_keys)


# ---- the commands the docs print --------------------------------------------------------

DOCS = [ROOT / "README.md", *(lesson.folder / "README.md" for lesson in LESSONS),
        *sorted((ROOT / "data").glob("*/README.md"))]
# Lesson 4a's commands grade the runtime lab on torch.distributed ranks (tens of seconds of
# CPU), lesson 10's draw a new measured-vs-predicted learner (seconds of calibration): the
# whole suite runs them, the fast lane the other docs' commands.
COSTLY_DOCS = {ROOT / "lessons" / name / "README.md"
               for name in ("04a-write-your-own-runtime", "10-measured-vs-predicted")}
# A doc picks one way: every command prefixed with .venv/bin/, or `source .venv/bin/activate`
# said first and bare commands after it.
ACTIVATE = "source .venv/bin/activate"
VENV_BIN = ".venv/bin/"
IN_VENV = {"pplab", "python", "python3", "torchrun", "jupyter", "ruff", "streamlit"}
NOT_OURS = {"pip", "apt-get", "sudo", "source", "cd", "git", "curl", "export"}
RUN_HERE = {"cp"}  # run in the test's copy of the repository, where later commands use them
MARKS = {line.split(":")[0] for line in tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
REPOSITORY = ("pplab", "app", "data", "lessons", "benchmarks", "scripts", "tests", "install.sh",
              ".ci", "pyproject.toml", "README.md")


def printed_commands(text: str) -> list[str]:
    """Commands in fenced or indented code blocks (one a line, ``\\`` continues one) and in
    inline code spans that start with a program this project installs or a ``bash``."""
    commands: list[str] = []
    paragraph: list[str] = []
    fenced = False

    def end_paragraph() -> None:
        for span in re.findall(r"`([^`]+)`", " ".join(paragraph)):
            first, *rest = span.split()  # one word (`pplab`) names a program, runs nothing
            if rest and (first in IN_VENV or first.startswith(VENV_BIN) or first == "bash"):
                commands.append(span)
        paragraph.clear()

    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("```"):
            end_paragraph()
            fenced = not fenced
        elif fenced or (line.startswith("    ") and not paragraph):
            if line.strip():
                commands.append(line.strip())
        elif line.strip():
            paragraph.append(line.strip())
        else:
            end_paragraph()
    joined: list[str] = []
    for command in commands:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + command
        else:
            joined.append(command)
    return [c for c in joined if c.split()[0] in IN_VENV | NOT_OURS | RUN_HERE | {"bash"}
            or c.startswith(VENV_BIN)]


def test_printed_commands_are_found():
    found = printed_commands("Run `.venv/bin/pplab lab`, then:\n```bash\n"
                             ".venv/bin/pplab simulate --pp 2 \\\n    --microbatches 2  # note\n"
                             "```\n\n    bash install.sh dev\n\n"
                             "Not `plotly` nor `pplab/cli/main.py`.")
    assert [shlex.split(c, comments=True) for c in found] == [
        [".venv/bin/pplab", "lab"], [".venv/bin/pplab", "simulate", "--pp", "2",
                                     "--microbatches", "2"], ["bash", "install.sh", "dev"]]


def _check_pplab(args: list[str], run_it: bool) -> str | None:
    parser = cli.build_parser()
    try:
        parsed = parser.parse_args(args)
    except SystemExit as exit_:
        return None if exit_.code == 0 else "pplab refuses these arguments"
    if parsed.command == "train":
        from pplab.cli.train import config_from_args
        from pplab.engine.request import check_request

        try:
            check_request(config_from_args(parsed))
        except ValueError as error:
            return f"the training request is refused: {error}"
    if run_it and parsed.command in ("schedules", "simulate", "validate"):
        code = cli.main(args)
        return None if code == 0 else f"exit status {code}"
    # An exercise's commands run, except training (--train) and grading a class's folder.
    action = getattr(parsed, "exercise_command", None)
    if (run_it and parsed.command == "exercise" and action != "report"
            and not getattr(parsed, "train", False)):
        code = cli.main(args)
        allowed = (0, 1) if action == "check" else (0,)  # a wrong example answer exits 1
        return None if code in allowed else f"exit status {code}"
    return None


def _check(words: list[str], activated: bool) -> str | None:
    program = words[0]
    if program.startswith(VENV_BIN):
        program = program[len(VENV_BIN):]
        if not (Path(sys.executable).parent / program).exists() and program != "jupyter":
            return f"{VENV_BIN}{program} is not installed by bash install.sh dev"
    elif program in IN_VENV and not activated:
        return (f"prints a bare {program!r}: after the Quickstart only {VENV_BIN}{program} "
                f"runs (or say {ACTIVATE!r} first)")
    args = words[1:]
    if program in NOT_OURS:
        return None
    if program == "cp":
        source, target = args
        if not Path(source).is_file():
            return f"no file {source} to copy"
        shutil.copy(source, target)
        return None
    if program == "bash":
        if args[:1] == ["install.sh"]:
            unknown = set(args[1:]) - {"dev", "notebooks"}
            return f"install.sh has no option {sorted(unknown)}" if unknown else None
        return None if Path(args[0]).exists() else f"no script {args[0]}"
    if program == "pplab":
        return _check_pplab(args, run_it=True)
    if program == "torchrun":
        return _check_pplab(args[args.index("pplab") + 1:], run_it=False)
    if program == "jupyter":
        return None if args[0] == "lab" and Path(args[1]).is_dir() else "jupyter lab FOLDER"
    if program == "ruff":
        missing = [a for a in args[1:] if not Path(a).exists()]
        return f"ruff: no {missing}" if missing else None
    if program.startswith("python"):
        return _check_python(args)
    return f"unknown program {program!r}: teach tests/test_lessons.py how to check it"


def _check_python(args: list[str]) -> str | None:
    if args[:2] == ["-m", "pplab"]:
        return _check_pplab(args[2:], run_it=True)
    if args[:2] == ["-m", "pytest"]:
        if "-m" in args[2:]:
            expression = args[args.index("-m", 2) + 1]
            unknown = set(re.findall(r"\w+", expression)) - {"not", "and", "or"} - MARKS
            return f"pytest marks {sorted(unknown)} are not registered" if unknown else None
        return None
    if args[0] == "-c":
        try:
            compile(args[1], "python -c", "exec")
        except SyntaxError as error:
            return f"the Python code does not compile: {error}"
        return None
    script = Path(args[0])
    return None if script.is_file() else f"no script {script}"


@pytest.mark.parametrize("doc", [pytest.param(doc, marks=[pytest.mark.slow] * (doc in COSTLY_DOCS))
                                 for doc in DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_printed_command_runs_after_the_quickstart(doc, tmp_path, monkeypatch, capsys):
    for name in REPOSITORY:  # the top of the repository, where files the commands write land
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    text = doc.read_text()
    commands = printed_commands(text)
    activated = ACTIVATE in text and not any(c.startswith(VENV_BIN) for c in commands)
    problems = []
    for command in commands:
        for part in re.split(r"\s&&\s", command):  # bash install.sh && .venv/bin/pplab lab
            problem = _check(shlex.split(part, comments=True), activated)
            capsys.readouterr()
            if problem:
                problems.append(f"{part}\n    -> {problem}")
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)
