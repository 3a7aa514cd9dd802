"""Classroom mode: the passcode, what a student may and may not do, and the broadcast run.

A lab started with ``pplab lab --classroom`` holds the passcode's digest in its environment;
here the environment is set directly and the pages are driven by AppTest, several sessions
in one process, as a server serves a class.

    .venv/bin/python -m pytest -q tests/test_classroom.py
"""

from __future__ import annotations

import hmac

import pytest
from app_helpers import open_page
from command_helpers import run_pplab

from pplab.classroom import passcode as classroom
from pplab.classroom.live_run import LIVE
from pplab.classroom.passcode_tries import TRIES
from pplab.cli import lab as lab_command

PASSCODE = "k7rm-x2qa-9tdu"


class Clock:
    """The passcode counter's clock, moved by hand: the waits it imposes pass at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    TRIES.forget()
    fake = Clock()
    monkeypatch.setattr(TRIES, "_clock", fake)
    monkeypatch.setattr(TRIES, "_log", lambda line: None)
    yield fake
    TRIES.forget()


@pytest.fixture
def class_lab(tmp_path, monkeypatch, clock):
    monkeypatch.setenv(classroom.DIGEST_ENV, classroom.digest(PASSCODE))
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PPLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "runs"


def test_the_passcode_is_checked_in_constant_time(monkeypatch):
    assert not classroom.passcode_matches(PASSCODE)  # not in classroom mode: nobody is
    monkeypatch.setenv(classroom.DIGEST_ENV, classroom.digest(PASSCODE))
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(classroom.hmac, "compare_digest",
                        lambda a, b: compared.append((a, b)) or real(a, b))
    assert classroom.passcode_matches(f"  {PASSCODE.upper()} ")
    assert not classroom.passcode_matches(PASSCODE[:-1])
    assert not classroom.passcode_matches(None) and not classroom.passcode_matches("x" * 10**4)
    assert len(compared) == 2 and all(len(a) == len(b) == 64 for a, b in compared)
    codes = {classroom.new_passcode() for _ in range(50)}
    assert len(codes) == 50 and all(len(c) == 14 for c in codes)


def test_a_student_can_simulate_but_not_train_until_the_passcode(class_lab, clock):
    playground = open_page()
    assert any("you are the student" in c.value for c in playground.sidebar.caption)
    assert playground.metric, "the Playground simulates for everyone"
    app = open_page("run")
    assert not any(b.label == "Start training" for b in app.button)
    assert any("only the instructor can start or stop training" in i.value for i in app.info)
    app.text_input(key="classroom_code_0").input("guess").run()
    assert any("next try is taken in 1 s" in e.value for e in app.error)
    assert not any(b.label == "Start training" for b in app.button)
    clock.now += 1.0
    app.run()
    assert any("not the passcode" in e.value for e in app.error)
    app.text_input(key="classroom_code_1").input(PASSCODE).run()
    assert not app.exception, app.exception
    assert any(b.label == "Start training" for b in app.button)
    assert any("you are the instructor" in c.value for c in app.sidebar.caption)


@pytest.mark.slow
def test_an_address_that_keeps_guessing_waits_longer_in_every_session(class_lab, clock):
    waits = []
    for tries in range(5):
        app = open_page("run")  # a new session each time: the count is the address's
        app.text_input(key="classroom_code_0").input(f"guess {tries}").run()
        waits.append(TRIES.wait_left(None))
        assert not app.text_input, "no box while the address must wait"
        clock.now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 900.0]
    clock.now -= 1.0
    app = open_page("run")
    assert any("5 wrong passcodes" in e.value and "Ask the instructor" in e.value
               for e in app.error)
    clock.now += 1.0
    app.run()
    app.text_input(key="classroom_code_0").input(PASSCODE).run()
    assert any(b.label == "Start training" for b in app.button)
    assert TRIES.wrong_tries(None) == 0, "the right passcode forgets the count"


def test_a_try_while_the_address_waits_is_not_even_checked(clock):
    checked = []
    TRIES.attempt("10.0.0.7", lambda: checked.append(1) or False)
    assert TRIES.attempt("10.0.0.7", lambda: checked.append(2) or True) is None
    assert checked == [1] and TRIES.wait_left("10.0.0.7") == 1.0
    assert TRIES.wait_left("10.0.0.8") == 0.0, "another address does not wait"


def test_a_malformed_digest_closes_the_lab_instead_of_opening_it(monkeypatch, clock):
    monkeypatch.setenv(classroom.DIGEST_ENV, "not-a-digest")
    assert classroom.in_classroom() and classroom.digest_problem()
    assert not classroom.passcode_matches("not-a-digest")
    app = open_page("run")
    assert not any(b.label == "Start training" for b in app.button)
    assert any("is not a SHA-256 digest" in e.value for e in app.error)


@pytest.mark.slow
def test_the_coding_lab_asks_for_the_passcode_in_a_classroom(class_lab):
    app = open_page("lessons")
    app.selectbox(key="lesson_pick").set_value(
        next(o for o in app.selectbox(key="lesson_pick").options if "own schedule" in o)).run()
    app.text_input(key="lesson_learner").input("ada").run()
    assert any("only the instructor can run uploaded code" in i.value for i in app.info)


def test_lab_command_prints_a_passcode_and_hands_the_server_only_its_digest(monkeypatch,
                                                                            capsys):
    started = {}
    monkeypatch.setattr(lab_command, "_port_problem", lambda host, port: None)
    monkeypatch.setattr(lab_command, "serve",
                        lambda argv, env: started.update(argv=argv, env=env) or 0)
    code, out, _ = run_pplab(capsys, "lab", "--classroom", "--host", "0.0.0.0", "--port", "8599")
    assert code == 0
    passcode = out.split("instructor passcode: ")[1].split()[0]
    assert started["env"][classroom.DIGEST_ENV] == classroom.digest(passcode)
    assert passcode not in " ".join(started["argv"]) + " ".join(started["env"].values())
    assert started["argv"][started["argv"].index("--server.address") + 1] == "0.0.0.0"
    assert "http://127.0.0.1:8599" in out
    run_pplab(capsys, "lab", "--port", "8599")  # without --classroom: no digest, localhost
    assert classroom.DIGEST_ENV not in started["env"]
    assert started["argv"][started["argv"].index("--server.address") + 1] == "127.0.0.1"


@pytest.mark.multiprocess  # the instructor's run trains real ranks
def test_the_instructors_run_reaches_every_student_who_cannot_stop_it(class_lab):
    instructor = open_page("run")
    instructor.text_input(key="classroom_code_0").input(PASSCODE).run()
    for key, value in (("run_p", 2), ("run_microbatches", 2), ("run_steps", 3),
                       ("run_layers", 2), ("run_batch", 4)):
        instructor.number_input(key=key).set_value(value)
    students = [open_page("run") for _ in range(3)]
    next(b for b in instructor.button if b.label == "Start training").click().run()
    assert not instructor.error, [e.value for e in instructor.error]
    owner = LIVE.snapshot().owner
    assert LIVE.snapshot().running and owner == instructor.session_state["classroom_session"]
    for student in students:
        assert not LIVE.stop(student.session_state["classroom_session"])  # not theirs
        student.run()
        assert any(s.value.startswith("Live run: 1f1b") for s in student.subheader)
        assert not any(b.label == "Stop the live run" for b in student.button)
    final = LIVE.wait(timeout=300)
    assert final.state == "done", final.message
    assert len(final.losses) == 3 and final.run_dir.startswith(str(class_lab))
    for student in students:
        student.run()
        assert any(s.value.startswith("done: saved to") for s in student.success)
        assert student.get("plotly_chart"), "every student sees the loss curve"


@pytest.mark.multiprocess  # a real lab server, and the live run it starts trains real ranks
def test_the_load_script_drives_a_real_classroom_server(tmp_path):
    """Not a timing test: the script's sessions reach the server, the instructor's passcode
    starts the live run, and the run ends done while students move sliders."""
    import subprocess
    import sys

    from app_helpers import ROOT

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "classroom_load.py"),
                           "--sessions", "3", "--moves", "2", "--seconds", "3",
                           "--run-steps", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "over 4\n" in done.stdout or "over 4 " in done.stdout  # 2 students x 2 changes
    assert "Live run: 1f1b p=2 m=2 / done: saved to" in done.stdout
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "classroom_load.py"),
                              "--sessions", "500"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "at most 60 sessions" in refused.stderr
