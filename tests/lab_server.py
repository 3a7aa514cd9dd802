"""Starting and stopping a real `pplab lab` server in tests: free ports, a log file instead of
a pipe (a pipe nobody reads fills up and stalls the server), and a stop that leaves nothing
running.

    pytest -q tests/test_browser.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_lab(port: int, log: Path, env: dict | None = None,
              options: tuple[str, ...] = ()) -> subprocess.Popen:
    """`python -m pplab lab --port PORT [options]` in its own process group, output into
    ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pplab", "lab", "--port", str(port), *options], cwd=ROOT,
            env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def wait_until_healthy(process: subprocess.Popen, port: int, log: Path,
                       seconds: float = 120.0) -> None:
    """Return once the server answers its health check; raise with its log otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                        timeout=2) as reply:
                if reply.read().decode() == "ok":
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"the lab exited: {log.read_text()}")
        time.sleep(0.5)
    raise AssertionError(f"the lab did not answer within {seconds:.0f} s: {log.read_text()}")


def stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the server's group, then SIGKILL whatever is still there after ``grace``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=grace)
