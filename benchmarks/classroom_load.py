"""A class on one lab: many browser sessions driving the Playground while one run goes live.

What it teaches: a shared lab is a server, and a server is judged at its tail. This script
starts ``pplab lab --classroom`` on loopback, waits for its warm-up (as an instructor opens
the lab before the class), starts the instructor's live run through the Run
page (typing the passcode the command printed), then connects ``--sessions`` student sessions
speaking Streamlit's own browser protocol (protobuf over its websocket, as the page does:
no browser needed). Each student changes the Playground's sliders ``--moves`` times, and the
time from sending a change to the server's "script finished" is one interaction. Some students
watch the Run page instead, re-running its live-run fragment every second as a browser would.
It prints the interactions' median and 95th percentile, the server's memory before and after,
and whether the live run ended as it should. Bounded: at most 60 sessions and 300 s, loopback
only.

    python benchmarks/classroom_load.py --sessions 30 --moves 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

MAX_SESSIONS, MAX_SECONDS = 60, 300
HOST = "127.0.0.1"
WARMED_UP = ("pplab lab: ready before the first visit", "pplab lab: warming up failed")


class Session:
    """One browser tab: a websocket, the current page, and the widgets it has seen.

    Always to the server on loopback; ``host`` is the name the tab says it asked for (its
    Host header) and ``source`` the loopback address it connects from (127.0.0.2 looks like
    another machine to the lab), so tests replay a foreign page or client without a network.
    """

    def __init__(self, port: int, host: str = HOST, source: str | None = None) -> None:
        self.url = f"ws://{host}:{port}/_stcore/stream"
        self.where = {"host": HOST, "port": port} | (
            {"local_addr": (source, 0)} if source else {})
        self.widgets: dict[str, str] = {}  # user key -> widget id
        self.pages: dict[str, str] = {}
        self.page = ""
        self.texts: list[str] = []
        self.elements: list = []  # every element the last run drew (protobufs)
        self.fragment: tuple[str, float] | None = None

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, max_size=2**26, subprotocols=["streamlit"],
                                          proxy=None, **self.where)
        return self

    async def __aexit__(self, *_):
        await self.ws.close()

    async def rerun(self, page: str | None = None, states: dict | None = None,
                    fragment: str = "", auto: bool = False, query: str = "") -> float:
        """Send one rerun (``states``: user key -> value; ``query``: the address's query
        string) and wait for it to finish; the seconds it took."""
        message = BackMsg()
        rerun = message.rerun_script
        rerun.page_script_hash = self.pages.get(page, self.page) if page is not None \
            else self.page
        rerun.fragment_id, rerun.is_auto_rerun = fragment, auto
        rerun.query_string = query
        for key, value in (states or {}).items():
            widget = rerun.widget_states.widgets.add()
            widget.id = self.widgets[key]
            if isinstance(value, bool):
                widget.trigger_value = value
            elif isinstance(value, str):
                widget.string_value = value
            elif isinstance(value, list):  # a slider
                widget.double_array_value.data.extend(value)
            elif isinstance(value, int):  # a whole-number input
                widget.int_value = value
            else:
                widget.double_value = value
        started = time.perf_counter()
        await self.ws.send(message.SerializeToString())
        self.texts, self.elements = [], []
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await self.ws.recv())
            kind = forward.WhichOneof("type")
            if kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash
                              for p in forward.navigation.app_pages}
                self.page = forward.navigation.page_script_hash
            elif kind == "auto_rerun":
                self.fragment = (forward.auto_rerun.fragment_id, forward.auto_rerun.interval)
            elif kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                name = element.WhichOneof("type")
                inner = getattr(element, name)
                self.elements.append(element)
                if hasattr(inner, "id") and "-" in getattr(inner, "id", ""):
                    self.widgets[inner.id.rsplit("-", 1)[-1]] = inner.id
                if name in ("markdown", "alert", "heading"):
                    self.texts.append(inner.body)
                elif name == "progress":
                    self.texts.append(inner.text)
            elif kind == "script_finished":
                if forward.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue  # the script asked for a rerun of itself: that one follows
                return time.perf_counter() - started


async def student(port: int, moves: int, latencies: list[float], seed: int,
                  think: tuple[float, float]) -> None:
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(*think))  # a class does not all arrive in one instant
    async with Session(port) as tab:
        await tab.rerun()
        for _ in range(moves):
            change = {"pg_microbatches": [float(rng.randint(1, 32))],
                      "pg_p": [float(rng.randint(2, 8))]}
            latencies.append((time.monotonic(), await tab.rerun(states=change)))
            await asyncio.sleep(rng.uniform(*think))  # a student looks before moving again


async def watcher(port: int, until: float, latencies: list[float]) -> None:
    async with Session(port) as tab:
        await tab.rerun()
        await tab.rerun(page="run")
        while time.monotonic() < until and tab.fragment is not None:
            fragment, interval = tab.fragment
            await asyncio.sleep(interval)
            latencies.append(await tab.rerun(fragment=fragment, auto=True))


async def instructor(port: int, passcode: str, steps: int) -> Session:
    tab = Session(port)
    await tab.__aenter__()
    await tab.rerun()
    await tab.rerun(page="run")
    await tab.rerun(states={"classroom_code_0": passcode})
    if "run_steps" not in tab.widgets:
        raise RuntimeError(f"the passcode was not taken: {tab.texts[-3:]}")
    await tab.rerun(states={"run_steps": steps, "run_microbatches": 2, "run_p": 2,
                            "run_layers": 2, "run_batch": 4, "Start training": True})
    await asyncio.sleep(2)
    await tab.rerun(page="run")
    if not any(text.startswith("Live run") or "step" in text for text in tab.texts):
        raise RuntimeError(f"the live run did not start: {tab.texts[-3:]}")
    return tab


def server_of(pid: int) -> int:
    """The Streamlit server: the child ``pplab lab`` (``pid``) starts and watches."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    raise RuntimeError(f"pplab lab ({pid}) has no server process")


def rss_mib(pid: int) -> float:
    """Resident memory of the server process (its work pool and the live run's ranks
    excluded)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds the server process has used, all its threads (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, runs: Path) -> tuple[subprocess.Popen, str]:
    log = runs / "lab.log"
    out = log.open("w")
    server = subprocess.Popen([sys.executable, "-m", "pplab", "lab", "--classroom", "--host",
                               HOST, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PPLAB_RUNS_DIR": str(runs)},
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.3)
    # A class joins a lab its instructor opened beforehand: the server's warm-up (the
    # Playground's first view, the Planner's ranking of every layout in a worker, then
    # gc.freeze) is done before the first student arrives.
    while time.monotonic() < deadline and not any(
            line in log.read_text() for line in WARMED_UP):
        time.sleep(0.3)
    text = log.read_text()
    if "instructor passcode: " not in text:
        raise RuntimeError(f"the lab did not start: {text[-500:]}")
    return server, text.split("instructor passcode: ")[1].split()[0]


async def drive(port: int, passcode: str, args) -> dict:
    latencies: list[float] = []
    watching: list[float] = []
    teacher = await instructor(port, passcode, args.run_steps)
    until = time.monotonic() + args.seconds
    watchers = max(1, args.sessions // 5)
    think = tuple(float(x) for x in args.think.split(","))
    tasks = [student(port, args.moves, latencies, seed, think)
             for seed in range(args.sessions - watchers)]
    tasks += [watcher(port, until, watching) for _ in range(watchers)]
    started = time.monotonic()
    found_started = started
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.seconds + 60)
    elapsed = time.monotonic() - started
    for _ in range(120):  # the live run goes on after the class stops moving sliders
        await teacher.rerun()
        if any(t.startswith(("done:", "the run failed", "stopped")) for t in teacher.texts):
            break
        await asyncio.sleep(1)
    await teacher.__aexit__()
    return {"latencies": latencies, "watching": watching, "elapsed": elapsed,
            "started": found_started,
            "students": args.sessions - watchers, "watchers": watchers,
            "live": " / ".join(t for t in teacher.texts if t.startswith(
                ("Live run", "done:", "the run failed", "stopped", "step")))[:300]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--moves", type=int, default=10, help="slider changes per student")
    parser.add_argument("--seconds", type=float, default=30, help="how long watchers watch")
    parser.add_argument("--run-steps", type=int, default=100, help="the live run's steps")
    parser.add_argument("--think", default="1,3", metavar="LOW,HIGH",
                        help="seconds a student looks at a result before the next change, "
                             "drawn uniformly (default 1,3)")
    parser.add_argument("--port", type=int, help="default: a free one")
    args = parser.parse_args(argv)
    try:
        low, high = (float(x) for x in args.think.split(","))
    except ValueError:
        low, high = -1.0, -1.0
    if not 0 <= low <= high <= 60:
        print("classroom_load: --think takes LOW,HIGH seconds, 0 <= LOW <= HIGH <= 60",
              file=sys.stderr)
        return 2
    if not (1 <= args.sessions <= MAX_SESSIONS and 1 <= args.moves <= 100
            and 1 <= args.seconds <= MAX_SECONDS and 1 <= args.run_steps <= 200):
        print(f"classroom_load: at most {MAX_SESSIONS} sessions, 100 moves, {MAX_SECONDS} s "
              f"and 200 steps", file=sys.stderr)
        return 2
    if args.port is None:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            args.port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="pplab-load-") as folder:
        server, passcode = start_server(args.port, Path(folder))
        try:
            streamlit = server_of(server.pid)
            before, cpu = rss_mib(streamlit), cpu_s(streamlit)
            found = asyncio.run(drive(args.port, passcode, args))
            after, cpu = rss_mib(streamlit), cpu_s(streamlit) - cpu
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    times = sorted(seconds for _, seconds in found["latencies"])
    slow = [round(at - found["started"], 1) for at, seconds in found["latencies"]
            if seconds > 1.0]
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"{found['students']} students x {args.moves} Playground changes ({args.think} s "
          f"between changes) and {found['watchers']} watching the live run, on "
          f"{os.cpu_count()} cores, loopback, {found['elapsed']:.0f} s")
    print(f"Playground interaction (send to script finished): median "
          f"{1e3 * statistics.median(times):.0f} ms, 95th percentile {1e3 * p95:.0f} ms, "
          f"worst {1e3 * times[-1]:.0f} ms over {len(times)}")
    if slow:
        print(f"interactions over 1 s: {len(slow)}, at {slow[:12]} s after the class began")
    if found["watching"]:
        print(f"live-run fragment refresh: median {1e3 * statistics.median(found['watching']):.0f}"
              f" ms over {len(found['watching'])}")
    print(f"server memory: {before:.0f} MiB before, {after:.0f} MiB after; server CPU "
          f"{cpu:.1f} s, {1e3 * cpu / len(times):.0f} ms per Playground interaction (every "
          f"request of the run, the watchers' and the instructor's included, over the "
          f"interactions)")
    print(f"the live run, as the instructor's page shows it at the end: "
          f"{found['live'] or '(nothing shown)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
