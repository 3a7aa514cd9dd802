"""Each attack on a shared lab, replayed against a real `pplab lab` on 127.0.0.1, refused.

The client speaks Streamlit's own websocket protocol (``benchmarks/classroom_load.py``'s
Session): a Host header of another site is a page that rebinds its name to this machine, and
a connection from 127.0.0.2 is a browser on another machine (the lab sees a client address
that is not its own loopback). Nothing leaves loopback; every wait is bounded; every server
is stopped by the test that started it. docs/security.md says what these promise.

    .venv/bin/python -m pytest -q tests/test_security.py -m "not multiprocess"
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from lab_server import ROOT, free_port, start_lab, stop_process_group, wait_until_healthy

sys.path.insert(0, str(ROOT / "benchmarks"))
from classroom_load import Session  # noqa: E402

from pplab.classroom.work_pool import default_workers  # noqa: E402
from pplab.limits import MAX_WORK_WAITING_PER_PROCESS  # noqa: E402

pytestmark = pytest.mark.slow  # real servers: seconds each
SEARCHED = "searched (memory cap C)"
WAIT_S = 120  # the most any one step of a test waits on a contended machine


class Lab:
    def __init__(self, tmp: Path, classroom: bool) -> None:
        self.port, self.log, self.runs = free_port(), tmp / "lab.log", tmp / "runs"
        self.process = start_lab(self.port, self.log, {
            "PPLAB_RUNS_DIR": str(self.runs), "PPLAB_HOME": str(tmp / "home")},
            ("--classroom",) if classroom else ())
        wait_until_healthy(self.process, self.port, self.log)
        text = self.log.read_text()
        self.passcode = text.split("instructor passcode: ")[1].split()[0] if classroom else ""

    def tab(self, **where) -> Session:
        return Session(self.port, **where)

    def stop(self) -> None:
        stop_process_group(self.process)


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("classroom"), classroom=True)
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def plain_lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("plain"), classroom=False)
    yield lab
    lab.stop()


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, WAIT_S))


async def opened(lab: Lab, page: str | None = None, **where) -> Session:
    tab = lab.tab(**where)
    await tab.__aenter__()
    await tab.rerun()
    if page:
        await tab.rerun(page=page)
    return tab


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def workers(lab: Lab) -> set[int]:
    found = set()
    for pid in descendants(lab.process.pid):
        try:
            if b"pplab.classroom.work_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            pass
    return found


def gone(pids: set[int], seconds: float = WAIT_S) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.2)
    return False


def port_is_free(port: int) -> bool:
    """Nothing listens on the port, and a new server may listen there (as servers do, with
    SO_REUSEADDR: the closed connections' TIME_WAIT does not hold the port)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
    return True


def test_the_lab_refuses_to_listen_beyond_this_machine_without_a_passcode():
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "pplab", "lab", "--host", "0.0.0.0", "--port",
                           str(port)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "add --classroom" in done.stderr and "run uploaded Python" in done.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "something listens"


def test_a_browser_on_another_machine_runs_no_code_on_a_plain_lab(plain_lab):
    async def attack():
        remote = await opened(plain_lab, "run", source="127.0.0.2")
        local = await opened(plain_lab, "run")
        await remote.__aexit__(), await local.__aexit__()
        return remote, local
    remote, local = run(attack())
    assert "run_steps" not in remote.widgets, "a remote browser got the training form"
    assert any("only a browser on the lab's own machine" in t for t in remote.texts)
    assert "run_steps" in local.widgets, "the lab's own user lost the form"


def test_a_page_of_another_site_cannot_open_the_labs_websocket(classroom, plain_lab):
    for lab in (classroom, plain_lab):
        with pytest.raises(Exception, match="403"):
            run(opened(lab, host="rebound.example"))
        run(opened(lab, host="localhost"))  # the lab's own names still work


def test_a_query_value_is_shown_as_text_never_as_a_link(classroom):
    async def attack():
        tab = await opened(classroom)
        await tab.rerun(page="compare", query="comparison=%5BCLICKME%5D(https%3A%2F%2Fx)")
        await tab.__aexit__()
        return tab.texts
    shown = [text for text in run(attack()) if "CLICKME" in text]
    assert shown and all("`[CLICKME](https://x)`" in text for text in shown), shown


def test_a_class_sees_that_a_page_failed_but_no_details(classroom, plain_lab):
    async def attack(lab):
        tab = await opened(lab)
        await tab.rerun(states={"pg_p": "x"})  # a forged widget value: a TypeError
        await tab.__aexit__()
        return [e.exception for e in tab.elements if e.WhichOneof("type") == "exception"]
    local = run(attack(plain_lab))
    assert local and local[0].type == "TypeError", "the forged value raised nothing"
    shared = run(attack(classroom))
    assert shared and all(not e.type and not e.stack_trace and "redacted" in e.message
                          for e in shared), shared


def test_metrics_tell_a_stranger_nothing_about_the_class(classroom):
    with urllib.request.urlopen(f"http://127.0.0.1:{classroom.port}/_stcore/metrics",
                                timeout=30) as reply:
        text = reply.read().decode()
    from pplab.classroom.passcode import digest
    for secret in (classroom.passcode, digest(classroom.passcode), str(classroom.runs),
                   str(ROOT), "lab_widgets", "ada"):
        assert secret not in text


def test_one_clients_clear_cache_leaves_everyone_elses_answers(classroom):
    heavy = {"pg_schedule": SEARCHED, "pg_p": [12.0], "pg_microbatches": [60.0]}

    async def searched() -> list[str]:
        tab = await opened(classroom)
        await tab.rerun(states={"pg_schedule": SEARCHED})
        await tab.rerun(states=heavy)
        await tab.__aexit__()
        return [t for t in tab.texts if t.startswith("Searching an order")]

    async def clear():
        from streamlit.proto.BackMsg_pb2 import BackMsg
        tab = await opened(classroom)
        message = BackMsg()
        message.clear_cache = True
        await tab.ws.send(message.SerializeToString())
        await tab.rerun()
        await tab.__aexit__()

    assert run(searched()), "the first ask computes (and says so)"
    run(clear())
    assert not run(searched()), "the answer was computed again after a client's clear cache"


def test_a_heavy_request_stops_when_its_tab_closes(classroom):
    async def leave_while_ranking() -> set[int]:
        tab = await opened(classroom, "planner")  # its default view starts the pool
        before = workers(classroom)
        tab.texts = []  # the default view's own "Ranking..." lines are not this request's
        asked = asyncio.create_task(tab.rerun(states={"pl_model": "megatron-1t",
                                                      "pl_nodes": 256, "pl_batch": 16384}))
        while not any(t.startswith("Ranking every layout") for t in tab.texts):
            assert not asked.done(), "the ranking finished before the tab closed"
            await asyncio.sleep(0.05)
        asked.cancel()
        await tab.ws.close()
        return before

    before = run(leave_while_ranking())
    deadline = time.monotonic() + 60
    while before <= workers(classroom) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not before <= workers(classroom), "the worker ranking for a closed tab went on"


def test_a_full_pool_says_busy_instead_of_queueing_the_class(classroom):
    asks = default_workers() * (1 + MAX_WORK_WAITING_PER_PROCESS) + 1

    async def crowd():
        tabs = [await opened(classroom) for _ in range(asks)]
        await asyncio.gather(*(tab.rerun(states={"pg_schedule": SEARCHED}) for tab in tabs))
        said = await asyncio.gather(*(tab.rerun(states={
            "pg_p": [16.0], "pg_microbatches": [40.0 + n]}) for n, tab in enumerate(tabs)))
        for tab in tabs:
            await tab.__aexit__()
        return said, [t for tab in tabs for t in tab.texts]
    _, texts = run(crowd())
    assert any(t.startswith("The lab is busy") for t in texts), "no request was told busy"


def test_passcode_guesses_count_per_address_across_sessions_and_wait_longer(classroom):
    async def guess(source: str) -> None:
        for _ in range(100):  # a new session each time; it gets a box once the wait is over
            tab = await opened(classroom, "run", source=source)
            await tab.__aexit__()
            if "classroom_code_0" in tab.widgets:
                break
            assert any("next try is taken in" in t for t in tab.texts), tab.texts
            await asyncio.sleep(0.5)
        async with classroom.tab(source=source) as tab:
            await tab.rerun()
            await tab.rerun(page="run")
            await tab.rerun(states={"classroom_code_0": "wrong-guess"})
            assert "run_steps" not in tab.widgets

    for source in ("127.0.0.5", "127.0.0.5", "127.0.0.6"):
        run(guess(source))
    log = classroom.log.read_text()  # what the instructor's terminal shows
    assert "wrong passcode from 127.0.0.5: 1 wrong from that address, its next try in 1 s" in log
    assert "wrong passcode from 127.0.0.5: 2 wrong from that address, its next try in 2 s" in log
    assert "wrong passcode from 127.0.0.6: 1 wrong from that address, its next try in 1 s" in log


def test_the_grader_child_sees_none_of_the_servers_environment(tmp_path, monkeypatch):
    from pplab.classroom.passcode import DIGEST_ENV
    from pplab.exercises.schedule_lab import check_file

    monkeypatch.setenv(DIGEST_ENV, "0" * 64)
    monkeypatch.setenv("PPLAB_SECRET_TOKEN", "s3cret")
    mine = tmp_path / "my_schedules.py"
    mine.write_text("import os\n\ndef gpipe(p, m, *rest):\n"
                    "    raise RuntimeError('ENV=' + ','.join(sorted(os.environ)))\n")
    shown = str(check_file(mine, "ada"))
    assert "ENV=" in shown, shown
    assert DIGEST_ENV not in shown and "PPLAB_SECRET_TOKEN" not in shown


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_pplab_lab_frees_its_port(tmp_path, stop):
    lab = Lab(tmp_path, classroom=False)
    try:
        below = descendants(lab.process.pid)
        os.kill(lab.process.pid, stop)
        lab.process.wait(timeout=30)
        assert gone(below, 30), "a process the lab started outlived it"
        assert port_is_free(lab.port)
    finally:
        lab.stop()


@pytest.mark.multiprocess  # the instructor's live run trains real ranks
def test_sigterm_stops_the_server_and_the_live_run_it_started(tmp_path):
    lab = Lab(tmp_path, classroom=True)
    try:
        async def start_run():
            tab = await opened(lab, "run")
            await tab.rerun(states={"classroom_code_0": lab.passcode})
            await tab.rerun(states={"run_steps": 200, "run_microbatches": 2, "run_p": 2,
                                    "run_layers": 2, "run_batch": 4, "Start training": True})
            await tab.__aexit__()
        run(start_run())
        deadline = time.monotonic() + WAIT_S
        while len(descendants(lab.process.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)  # the server, pplab train and its two ranks
        below = descendants(lab.process.pid)
        assert len(below) >= 4, "the live run did not start"
        lab.process.send_signal(signal.SIGTERM)
        lab.process.wait(timeout=30)
        assert gone(below, 30), "the live run outlived the lab"
        assert port_is_free(lab.port)
    finally:
        lab.stop()
