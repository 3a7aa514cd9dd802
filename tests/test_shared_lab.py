"""A lab shared by a class: the work pool, the shared answers, the attempts, the lab command.

The pool's tests start worker processes (a second or two each), so they run in the slow lane;
the rest is plain logic. tests/test_security.py replays the attacks on a real server.

    .venv/bin/python -m pytest -q tests/test_shared_lab.py
"""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

from pplab.classroom import page_work
from pplab.classroom.shared_results import SharedResults, content_key
from pplab.classroom.work_pool import Busy, Cancelled, OutOfTime, WorkPool
from pplab.cli import lab as lab_command
from pplab.exercises.attempts import AttemptBook, SessionBook, submission
from pplab.limits import MAX_ATTEMPTS_FILE_BYTES
from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS
from pplab.sim.simulator import CostModel

HEAVY = ("pplab.classroom.page_work", "ranked_layouts", PRESET_MODELS["megatron-1t"],
         PRESET_CLUSTERS["dgx-a100-80gb"].with_nodes(256), 16384)


@pytest.fixture
def pool():
    made = WorkPool(workers=1, waiting_per_worker=2, deadline_s=60)
    yield made
    made.shutdown()


# ---- the work pool (worker processes) ------------------------------------------------------

@pytest.mark.slow
def test_a_request_past_its_deadline_is_stopped_and_the_next_one_answered(pool):
    pool.deadline_s = 1.0
    with pytest.raises(OutOfTime, match="longer than 1 s"):
        pool.run("slow", *HEAVY)
    pool.deadline_s = 60
    found = pool.run("next", "pplab.classroom.page_work", "family_order", "1f1b", 2, 4, 1,
                     CostModel())
    assert found.metrics["makespan"] > 0, "the fresh worker did not answer"


@pytest.mark.slow
def test_work_nobody_waits_for_is_cancelled_and_a_shared_job_only_by_its_last_waiter(pool):
    job = pool.submit("heavy", *HEAVY)
    again = pool.submit("heavy", *HEAVY)  # a second session asking the same
    assert again is job and job.waiters == 2
    pool.release(again)
    assert not job.cancelled, "one of two waiters leaving cancelled the shared job"
    while job.started is None:
        time.sleep(0.05)
    pool.release(job)
    assert job.wait(30) and isinstance(job.error, Cancelled)


@pytest.mark.slow
def test_a_full_waiting_line_says_busy_at_once(pool):
    jobs = [pool.submit("heavy-0", *HEAVY)]
    while jobs[0].started is None:  # running: the waiting line is empty again
        time.sleep(0.05)
    jobs += [pool.submit(f"heavy-{n}", *HEAVY[:-1], 16384 + 8 * n) for n in (1, 2)]
    with pytest.raises(Busy, match="busy: .* try again in a few seconds"):
        pool.submit("one-more", *HEAVY)
    for job in jobs:
        pool.release(job)


@pytest.mark.slow
def test_the_pool_runs_pplabs_functions_only_and_passes_a_users_mistake_through(pool):
    with pytest.raises(ValueError, match="pplab's functions only"):
        pool.run("os", "os", "system", "true")
    with pytest.raises(ValueError, match="cannot read action"):
        pool.run("csv", "pplab.classroom.page_work", "csv_order", "0F0,zz\n", CostModel())


# ---- shared answers ------------------------------------------------------------------------

def test_thirty_sessions_asking_the_same_at_once_compute_it_once():
    calls = []

    def slow_square(x):
        calls.append(x)
        time.sleep(0.2)
        return x * x

    results = SharedResults(pool=None)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(results.here(slow_square, 7)))
               for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [49] * 30 and calls == [7]


def test_a_csv_is_keyed_by_its_text_never_by_its_file_name():
    import sys

    from app_helpers import ROOT
    sys.path.insert(0, str(ROOT / "app"))
    from lab_widgets import SimConfig

    text = "0F0,0B0\n"
    one = SimConfig("custom CSV", 0, 0, 1, CostModel(), csv_text=text, csv_name="a.csv")
    two = SimConfig("custom CSV", 0, 0, 1, CostModel(), csv_text=text, csv_name="b.csv")
    key = content_key("m", "f", (one.content(),), {})
    assert key == content_key("m", "f", (two.content(),), {})
    assert key != content_key("m", "f", (SimConfig("custom CSV", 0, 0, 1, CostModel(),
                                                   csv_text=text + "\n"),), {})


def test_kept_answers_are_bounded_and_a_big_timeline_counts_for_several():
    results = SharedResults(pool=None, max_entries=10)
    results.keep("big", pd.DataFrame({"start": range(100_000)}))  # 6 entries' worth
    for n in range(4):
        results.here(page_work.family_order, "1f1b", 2, n + 1, 1, CostModel())
    assert len(results) == 5, "a big timeline pushed out small answers too early"
    results.here(page_work.family_order, "1f1b", 2, 9, 1, CostModel())
    absent = results.lookup("no such key")
    assert len(results) == 5 and results.lookup("big") is absent, "the oldest goes first"
    for n in range(20):
        results.here(page_work.family_order, "1f1b", 3, n + 1, 1, CostModel())
    assert len(results) == 10, "more were kept than the bound"


# ---- attempts ------------------------------------------------------------------------------

def test_an_attempts_file_too_big_is_neither_emptied_nor_overwritten(tmp_path):
    path = tmp_path / "attempts.json"
    path.write_text(" " * (MAX_ATTEMPTS_FILE_BYTES + 1))
    book = AttemptBook(path)
    assert book.try_answer("ada", "bubble", "a", "7", False, True) is None
    assert "over pplab's 4 MiB" in book.problem and "move it away" in book.problem
    assert path.stat().st_size == MAX_ATTEMPTS_FILE_BYTES + 1, "the file was rewritten"
    path.write_text("{not json")
    assert book.try_answer("ada", "bubble", "a", "7", False, True) is None
    assert "cannot be read" in book.problem and path.read_text() == "{not json"


def test_the_feedback_says_when_a_try_was_not_recorded(tmp_path):
    from pplab.exercises import check, get_exercise

    path = tmp_path / "attempts.json"
    path.write_text(" " * (MAX_ATTEMPTS_FILE_BYTES + 1))
    verdict = check(get_exercise("bubble"), "ada", {"a": "1"}, book=AttemptBook(path))[0]
    assert "this try was not recorded" in verdict.message


def test_each_session_keeps_its_own_tries_and_hands_them_in_as_submit_does(tmp_path):
    mine, theirs = SessionBook(), SessionBook()
    for answer in ("1", "2", "3", "4"):
        mine.try_answer("ada", "bubble", "a", answer, False, True)
    assert theirs.try_answer("ada", "bubble", "a", "1", False, True) == 1, \
        "another session used up ada's hints"
    assert submission(mine, "ada")["answers"] == {"bubble": {"a": "4"}}
    for n in range(40):
        mine.try_answer(f"name-{n}", "bubble", "a", "1", False, True)
    assert "holds the tries of 16 names" in mine.problem
    json.dumps(submission(mine, "ada"))  # the file pplab exercise report reads


# ---- the lab command -----------------------------------------------------------------------

def test_the_lab_command_serves_only_the_names_it_answers_to():
    assert lab_command.allowed_hosts("127.0.0.1", []) == ["localhost", "127.0.0.1", "::1"]
    wide = lab_command.allowed_hosts("0.0.0.0", ["lab.school.edu"])
    assert "localhost" in wide and "lab.school.edu" in wide and "*" not in wide
    assert all(lab_command.is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.9"))
    assert not any(lab_command.is_loopback(h) for h in ("0.0.0.0", "10.0.0.7", "lab.example"))


def test_streamlit_is_started_hardened_and_quiet_about_errors_in_a_classroom(tmp_path):
    shared = lab_command.streamlit_command(tmp_path / "lab.py", "0.0.0.0", 8599, True,
                                           ["lab.school.edu"])

    def option(argv, name):
        return [argv[i + 1] for i, word in enumerate(argv) if word == name]

    assert option(shared, "--server.allowedHosts") == ["lab.school.edu"]
    assert option(shared, "--client.showErrorDetails") == ["none"]
    assert option(shared, "--server.enableAgentApi") == ["false"]
    assert option(shared, "--server.enableXsrfProtection") == ["true"]
    local = lab_command.streamlit_command(tmp_path / "lab.py", "127.0.0.1", 8599)
    assert option(local, "--client.showErrorDetails") == ["full"]


# ---- the pages' bounds (set from measured cost) -------------------------------------------

@pytest.mark.slow  # a page flow
def test_the_playground_refuses_a_view_past_its_measured_bound_in_one_line():
    from app_helpers import open_page

    app = open_page()
    app.selectbox(key="pg_schedule").set_value("interleaved-zb").run()
    for key, value in (("pg_p", 16), ("pg_microbatches", 64), ("pg_chunks", 8)):
        app.slider(key=key).set_value(value)
    app.run()
    assert not app.error, "the largest single step is within the bound"
    app.slider(key="pg_steps").set_value(8).run()
    assert [e.value for e in app.error] and "pages draw at most 32,768" in app.error[0].value


def test_the_presenter_refuses_more_boxes_than_it_animates():
    from app_helpers import ENTRY
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(ENTRY, default_timeout=120)
    app.query_params.update({"schedule": "interleaved-1f1b", "p": "8", "m": "16", "v": "4",
                             "steps": "4"})
    app.run()
    app.switch_page("views/presenter.py").run()
    assert any("more than the Presenter animates" in e.value for e in app.error), \
        [e.value for e in app.error]


def test_no_page_keeps_answers_in_streamlits_caches_which_any_client_can_empty():
    from app_helpers import ROOT

    found = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "app").rglob("*.py"))
             if "st.cache_data" in path.read_text() or "st.cache_resource" in path.read_text()]
    assert not found, f"use shared_work.shared_cache instead: {found}"


def test_a_served_figure_is_its_plain_form_drawn_as_plotly_would_with_one_template():
    import importlib
    import sys

    import plotly.graph_objects as go
    import plotly.io as pio
    from app_helpers import ROOT

    sys.path.insert(0, str(ROOT / "app"))  # as the pages import it
    try:
        ServedFigure = importlib.import_module("shared_work").ServedFigure
    finally:
        sys.path.remove(str(ROOT / "app"))

    from pplab import charts
    from pplab.schedules import build
    from pplab.sim.simulator import CostModel, simulate

    events = simulate(build("1f1b", 3, 4), CostModel())
    made = [charts.gantt(events, title="one"), charts.gantt(events, title="two")]
    served = [ServedFigure.of(figure) for figure in made]
    for figure, kept in zip(made, served, strict=True):
        assert pio.to_json(kept.to_dict()) == pio.to_json(figure.to_dict())
        assert kept.to_dict() is kept.to_dict()  # worked out once, handed out as is
        assert not hasattr(kept, "_data")  # none of plotly's objects kept beside it
    assert served[0].to_dict()["layout"]["template"] is served[1].to_dict()["layout"]["template"]
    # a page that wants to change one makes a figure of its plain form
    retitled = go.Figure(served[0].to_dict()).update_layout(title="three")
    assert retitled.layout.title.text == "three" and len(retitled.data) == len(made[0].data)
