"""Supervision under fire: ranks killed or stopped at random points, a parent stopped or killed.

Each test asserts what the user is owed: the run ends with the failed rank's own error (its
own words, not a peer's echo, and not "no progress within the timeout" when it died), and
leaves no process, no rendezvous folder and no run directory behind. Most checks use plain
processes without torch (``backend=None``: the supervisor alone, under a second each); a few
run the real engine on two ranks and a tiny model. The kill points are drawn at random from
fixed seeds, so a failure names the point it hit and reruns the same way. No outcome depends
on how fast anything runs: a rank aimed at waits, once its steps are done, until it is ended,
so a kill or a stop always lands while it runs; the engine's ranks fail by the fault it
injects at a chosen step (``TrainConfig.fault``), not by a kill sent after a delay.

    pytest -q tests/test_reliability.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pplab.engine import rank_watch, rendezvous
from pplab.engine.supervisor import RankFailed, spawn_ranks

pytestmark = [pytest.mark.multiprocess,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")]

TINY = {"d_model": 16, "heads": 2, "seq_len": 8, "layers": 2}
BIG_RESULT = 32 * 2**20  # far more than a pipe holds: the parent reads it in many pieces


def stepping_rank(rank, world_size, report, steps, pause):
    """Report ``steps`` steps, ``pause`` seconds apart, then wait until the parent ends it.

    It never answers: a kill or a stop aimed at it lands while it runs, however late the
    parent sends it, so no outcome depends on the machine's speed."""
    for step in range(steps):
        report("step", step=step)
        time.sleep(pause)
    time.sleep(600)


def big_result_rank(rank, world_size, report, size):
    report("step", step=0)
    return bytes(size)


def sleepy_rank(rank, world_size, report):
    report("step", step=0)
    time.sleep(600)


def teardown_failing_rank(rank, world_size, report):
    """Answer, then fail while leaving the process group: by raising, or by dying."""
    import torch.distributed as dist

    def raise_on_leaving():
        raise RuntimeError("destroy_process_group failed")

    def die_on_leaving():
        os.kill(os.getpid(), signal.SIGKILL)

    dist.destroy_process_group = raise_on_leaving if rank == 0 else die_on_leaving
    report("step", step=0)
    return rank * 10


def _our_ranks() -> list[int]:
    """Rank processes this test process started that are still alive (zombies excluded)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _our_rendezvous_folders() -> list[Path]:
    root = rendezvous.root()
    return sorted(root.glob(f"{os.getpid()}-*")) if root.exists() else []


def _assert_nothing_left() -> None:
    assert multiprocessing.active_children() == []
    assert _our_ranks() == []
    assert _our_rendezvous_folders() == []


class _Killer:
    """An ``on_report`` that sends ``sig`` to rank ``victim`` at the report ``when`` picks,
    after ``delay`` seconds (from a timer, so it lands wherever the rank then is)."""

    def __init__(self, victim: int, when, sig=signal.SIGKILL, delay: float = 0.0):
        self.victim, self.when, self.sig, self.delay = victim, when, sig, delay
        self.pids: dict[int, int] = {}
        self.fired = False

    def __call__(self, rank, event, fields):
        if event == "started":
            self.pids[rank] = fields["pid"]
        if rank == self.victim and not self.fired and self.when(event, fields):
            self.fired = True
            if self.delay:
                threading.Timer(self.delay, self._send).start()
            else:
                self._send()

    def _send(self):
        os.kill(self.pids[self.victim], self.sig)


def test_a_rank_killed_while_sending_its_result_is_named_and_nothing_is_left():
    size = len(pickle.dumps(bytes(BIG_RESULT)))
    killer = _Killer(1, lambda event, fields: event == "sending-result")
    with pytest.raises(RankFailed) as caught:
        spawn_ranks(2, big_result_rank, BIG_RESULT, backend=None, timeout=60, on_report=killer)
    assert str(caught.value) == (f"rank 1 failed: killed by signal 9, while sending its "
                                 f"result of {size:,} bytes")
    _assert_nothing_left()


def test_a_rank_stopped_while_sending_its_result_is_blamed_at_the_timeout():
    size = len(pickle.dumps(bytes(BIG_RESULT)))
    stopper = _Killer(0, lambda event, fields: event == "sending-result", signal.SIGSTOP)
    with pytest.raises(RankFailed) as caught:
        spawn_ranks(2, big_result_rank, BIG_RESULT, backend=None, timeout=3, on_report=stopper)
    assert str(caught.value) == (
        f"rank 0 failed: no progress within the timeout of 3 s (the process is stopped, by "
        f"SIGSTOP or a debugger, while sending its result of {size:,} bytes)")
    _assert_nothing_left()


def test_a_stopped_rank_is_told_by_its_missing_heartbeat_where_proc_cannot_say(monkeypatch):
    # The portable path: without /proc the parent knows a stopped rank only by its silence.
    monkeypatch.setattr(rank_watch, "process_state", lambda pid: None)
    stopper = _Killer(1, lambda event, fields: event == "step" and fields["step"] == 2,
                      signal.SIGSTOP)
    with pytest.raises(RankFailed) as caught:
        # Rank 0 goes on beating; rank 1 stops at step 2. The timeout must name rank 1's
        # silence: rank 1 has been silent at least as long as the timeout (5 s), longer
        # than the missed heartbeats (3 s) that make a silent rank stalled.
        spawn_ranks(2, stepping_rank, 10, 0.01, backend=None, timeout=5, on_report=stopper)
    message = str(caught.value)
    assert message.startswith("rank 1 failed: no progress within the timeout of 5 s (it is "
                              "alive but sent no heartbeat for "), message
    assert message.endswith(" s: suspended or frozen)")
    _assert_nothing_left()


@pytest.mark.parametrize("seed", range(6))
def test_a_rank_killed_at_a_random_point_ends_the_run_with_its_error(seed):
    draw = random.Random(seed)
    victim, step, delay = draw.randrange(2), draw.randrange(0, 15), draw.uniform(0, 0.2)
    point = f"rank {victim} after step {step} + {delay:.3f} s"
    killer = _Killer(victim, lambda event, fields: fields.get("step") == step, delay=delay)
    with pytest.raises(RankFailed) as caught:
        # A rank waits once its 15 steps are done: the kill lands in the run however late.
        spawn_ranks(2, stepping_rank, 15, 0.05, backend=None, timeout=60, on_report=killer)
    assert str(caught.value).startswith(f"rank {victim} failed: killed by signal 9"), point
    _assert_nothing_left()


def test_a_rank_that_fails_leaving_the_process_group_does_not_fail_a_finished_run():
    # Rank 0 raises in destroy_process_group, rank 1 dies in it: both had answered.
    assert spawn_ranks(2, teardown_failing_rank, backend="gloo", timeout=120) == [0, 10]
    _assert_nothing_left()


KILL_RUN_STEPS = 12


@pytest.mark.parametrize("where", ["a random step", "the last step"])
def test_the_engine_ends_with_the_killed_ranks_error_wherever_it_is_killed(tmp_path, where):
    from pplab.engine import launch
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    draw = random.Random(where)  # a string seeds the same way in every run
    victim = draw.randrange(2)
    step = draw.randrange(0, KILL_RUN_STEPS - 1) if where == "a random step" \
        else KILL_RUN_STEPS - 1
    # The engine's own fault injection: the rank kills itself with SIGKILL halfway through
    # its actions of that step, wherever the other rank then is, on any machine's speed.
    out = tmp_path / "never"
    config = TrainConfig(schedule="1f1b", pp_size=2, microbatches=2, steps=KILL_RUN_STEPS,
                         timeout=60, fault=f"{victim}:{step}:kill", out=str(out), **TINY)
    request = check_request(config)
    with pytest.raises(RankFailed) as caught:
        launch.run_training(request, launch.output_dir(request))
    assert str(caught.value).startswith(f"rank {victim} failed: killed by signal 9"), step
    assert not out.exists() and list(tmp_path.iterdir()) == []
    _assert_nothing_left()


def _start_train(tmp_path, *extra):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pplab", "train", "--out", str(out), "--steps", "5000",
               "--pp", "2", "--microbatches", "2", "--d-model", "16", "--heads", "2",
               "--seq-len", "8", "--layers", "2", "--json-progress", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL)
    for line in process.stdout:
        message = json.loads(line)
        if message["event"] == "ready" and message["ready"] == message["ranks"]:
            return process, out
    raise AssertionError(f"pplab train ended early: {process.wait()} {process.stderr.read()}")


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_sigterm_to_pplab_train_alone_stops_its_ranks_and_leaves_nothing(tmp_path):
    process, out = _start_train(tmp_path)
    ranks = [pid for pid in _children_of(process.pid)
             if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(ranks) == 2
    process.send_signal(signal.SIGTERM)  # the parent only, not its process group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.strip().splitlines()[-1] == "pplab train: stopped; no run directory was written"
    assert not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in ranks)
    assert list(rendezvous.root().glob(f"{process.pid}-*")) == []
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _state(pid: int) -> str | None:
    return rank_watch.process_state(pid)


def test_a_parent_killed_outright_leaves_a_folder_the_next_run_sweeps(tmp_path):
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import test_reliability as t; "
              "from pplab.engine.supervisor import spawn_ranks; "
              "spawn_ranks(2, t.sleepy_rank, backend=None, timeout=600, "
              "on_report=lambda r, e, f: print(e, flush=True) if e == 'step' else None)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent)],
                              stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert [parent.stdout.readline(), parent.stdout.readline()] == ["step\n", "step\n"]
    ranks = _children_of(parent.pid)
    folders = list(rendezvous.root().glob(f"{parent.pid}-*"))
    assert len(folders) == 1 and ranks
    parent.kill()
    parent.wait(timeout=30)
    # Orphaned, each rank notices its parent is gone within a heartbeat and exits. No
    # deadline of ours: a rank that never exits is caught by pytest's own timeout.
    while any(_state(pid) not in (None, "Z") for pid in ranks):
        time.sleep(0.2)
    assert folders[0].exists()  # nobody could remove it...
    assert folders[0] in rendezvous.sweep()  # ...until the next run looks
    assert not folders[0].exists()
