"""Random command lines: every outcome is success or one line with exit 1 or 2, never a traceback.

Hypothesis writes command lines for ``pplab simulate``, ``validate``, ``train`` (checked and
stopped by ``--dry-run``: nothing is started) and ``compare`` (its configuration syntax too),
mixing sensible values with the ones that break programs: zero, negatives, huge numbers,
infinities, NaN, junk text. Each runs through ``pplab.cli.main.main`` in this process; a few run
as real ``python -m pplab`` processes, to prove no traceback escapes the way users see it.
No example has a deadline (tests/conftest.py): a hang is caught by pytest's timeout, and a slow
example on a busy machine fails nothing.

    pytest -q tests/test_reliability_properties.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from command_helpers import run_pplab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pplab import limits
from pplab.engine import launch, machine, supervisor
from pplab.engine.compare_specs import parse_spec
from pplab.schedules import SCHEDULES

# Examples: the lane's profile (tests/conftest.py). The fixtures only guard: once serves all.
BOUND = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# Sensible values three times in four: a command line with one wrong value is the common
# mistake, and the valid ones must reach the deeper checks.
SMALL = st.integers(1, 8).map(str)
WHOLE = st.one_of(
    SMALL, SMALL, SMALL,
    st.sampled_from(["0", "-1", "+2", " 3", "1.5", "1e3", "inf", "nan", "", "four", "٣",
                     str(limits.MAX_PP_SIZE + 1), str(limits.MAX_MICROBATCHES + 1),
                     str(10**12), str(10**40), "9" * 5000]),
)
SENSIBLE = st.sampled_from(["1e-3", "0.002", "5", "60"])
REAL = st.one_of(
    SENSIBLE, SENSIBLE, SENSIBLE,
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e-3", "0.5", "30", "1e15", "1e400", "-0.0", "inf", "nan", "x", ""]),
)
JUNK = st.text(max_size=12)
FAMILIES = st.sampled_from(sorted(SCHEDULES))
NAMES = st.one_of(FAMILIES, FAMILIES, FAMILIES, JUNK)


# A command line that slips past pplab's limits must fail here as a MemoryError (an internal
# error: the test fails, naming it), not take the shared machine's memory with it.
MEMORY_HEADROOM = 2 * 2**30


@contextmanager
def memory_capped(headroom: int = MEMORY_HEADROOM):
    """This process's address space capped at what it holds now plus ``headroom``."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        held = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, AttributeError):  # no /proc: no cap
        yield
        return
    cap = held + headroom if hard == resource.RLIM_INFINITY else min(held + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def guarded(monkeypatch, tmp_path):
    """No rank may start; the runs folder is private; the machine is a fixed small one; the
    memory is capped."""
    def refuse(*args, **kwargs):
        raise AssertionError("a rank was started")

    monkeypatch.setattr(supervisor, "spawn_ranks", refuse)
    monkeypatch.setattr(launch, "spawn_ranks", refuse)
    monkeypatch.setattr(machine, "rank_slots", lambda device: 2)
    monkeypatch.setattr(machine, "memory_bytes", lambda: 16 * 2**30)
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    with memory_capped():
        yield tmp_path


def assert_clean(code, out, err, argv, codes=(0, 1, 2)) -> None:
    assert code in codes, (argv, code, err)
    assert "Traceback" not in out + err and "internal error" not in err, (argv, err)
    if code != 0 and err:  # one line on stderr...
        assert len(err.splitlines()) == 1 and err.startswith("pplab"), (argv, err)
    elif code != 0:  # ...or validate's verdict on stdout (then the step x rank grid)
        assert argv[0] == "validate" and ": invalid: " in out.splitlines()[0], (argv, out)


def _options(draw, flags: dict, usual=("--pp", "--microbatches")) -> list[str]:
    """Some of ``flags`` with drawn values: the ``usual`` ones mostly, the others seldom."""
    argv = []
    for flag, values in flags.items():
        if (draw(st.integers(0, 3)) > 0) == (flag in usual):
            argv += [flag, draw(values)]
    return argv


@st.composite
def simulate_argv(draw):
    argv = ["simulate", "--schedule", draw(NAMES)]
    argv += _options(draw, {"--pp": WHOLE, "--stages": WHOLE, "--microbatches": WHOLE,
                            "--chunks": WHOLE, "--steps": WHOLE})
    if draw(st.booleans()):
        keys = st.sampled_from(["f", "b", "i", "w", "comm", "lat", "bw", "bytes", "opt",
                                "scale", "zzz"])
        pairs = draw(st.lists(st.tuples(keys, REAL), max_size=3))
        argv += ["--cost", ",".join(f"{k}={v}" for k, v in pairs)]
    return argv + (["--json"] if draw(st.booleans()) else [])


@BOUND
@given(argv=simulate_argv())
def test_random_simulate_command_lines_succeed_or_fail_in_one_line(capsys, guarded, argv):
    assert_clean(*run_pplab(capsys, *argv), argv)


ACTIONS = st.builds(lambda s, k, m: f"{s}{k}{m}", st.integers(0, 3),
                    st.sampled_from(["F", "B", "I", "W", "X", ""]), st.integers(0, 4))
CELLS = st.one_of(ACTIONS, JUNK, st.sampled_from(["", "None", "0F0;1B0", "99999999999F0"]))


@BOUND
@given(rows=st.lists(st.lists(CELLS, max_size=6), max_size=5),
       newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
def test_random_schedule_files_are_validated_and_simulated_or_refused_in_one_line(
        capsys, guarded, rows, newline, bom):
    path = guarded / "random.csv"
    path.write_text(("\ufeff" if bom else "") + newline.join(",".join(r) for r in rows),
                    encoding="utf-8", newline="")
    for argv in (["validate", str(path)], ["simulate", "--csv", str(path), "--json"]):
        assert_clean(*run_pplab(capsys, *argv), argv)


@st.composite
def train_argv(draw):
    argv = ["train", "--dry-run", "--out", draw(st.sampled_from(["-", "runs/x"]))]
    if draw(st.booleans()):
        argv += ["--schedule", draw(NAMES)]
    argv += _options(draw, {
        "--pp": WHOLE, "--stages": WHOLE, "--microbatches": WHOLE, "--chunks": WHOLE,
        "--steps": WHOLE, "--layers": WHOLE, "--batch-size": WHOLE, "--seq-len": WHOLE,
        "--d-model": WHOLE, "--heads": WHOLE, "--d-ff": WHOLE, "--seed": WHOLE, "--tp": WHOLE,
        "--dp": WHOLE, "--lr": REAL, "--timeout": REAL, "--split": JUNK, "--fault": JUNK,
        "--task": st.sampled_from(["reverse", "sort", "text", "nope"]),
        "--dtype": st.sampled_from(["float32", "float64", "int8"]),
    })
    for flag in ("--oversubscribe", "--no-record", "--json-progress"):
        if draw(st.booleans()):
            argv.append(flag)
    return argv


@BOUND
@given(argv=train_argv())
def test_random_train_command_lines_are_checked_before_anything_starts(capsys, guarded, argv):
    code, out, err = run_pplab(capsys, *argv)
    assert_clean(code, out, err, argv, codes=(0, 2))


SPEC = st.builds(
    lambda name, pairs: name + (":" + ",".join(f"{k}={v}" for k, v in pairs) if pairs else ""),
    st.one_of(st.sampled_from(sorted(SCHEDULES) + ["tp", "dp"]), JUNK),
    st.lists(st.tuples(st.sampled_from(["pp", "m", "v", "tp", "dp", "x"]), WHOLE), max_size=4))


@BOUND
@given(specs=st.lists(st.one_of(SPEC, JUNK), min_size=1, max_size=3),
       steps=WHOLE, timeout=REAL)
def test_random_compare_command_lines_are_checked_before_anything_starts(capsys, guarded,
                                                                        specs, steps, timeout):
    argv = ["compare", *specs, "--steps", steps, "--timeout", timeout, "--dry-run",
            "--out", str(guarded / "comparison")]
    code, out, err = run_pplab(capsys, *argv)
    assert_clean(code, out, err, argv, codes=(0, 2))


@settings(max_examples=300)  # microseconds each: as many in both lanes
@given(text=st.one_of(SPEC, st.text(max_size=300)))
def test_random_configuration_text_is_a_spec_or_one_value_error(text):
    try:
        spec = parse_spec(text)
    except ValueError as error:
        assert "\n" not in str(error)
    else:
        assert spec.topology.world_size >= 1


# Each starts Python and pplab (about a second): the fast lane runs one that simulates; the
# whole suite runs them all.
NASTY = [
    ["simulate", "--schedule", "1f1b", "--pp", "99999999999999999999", "--microbatches", "8"],
    ["simulate", "--schedule", "gpipe", "--pp", "2", "--microbatches", "2", "--cost",
     "f=nan", "--json"],
    ["validate", "/dev/null"],
    ["train", "--timeout", "inf", "--out", "-"],
    ["train", "--stages", "512", "--out", "-"],
    ["compare", "1f1b:pp=99999999999999999999999", "--dry-run"],
]
IN_THE_FAST_LANE = (0,)


@pytest.mark.parametrize("argv", [
    pytest.param(argv, id=" ".join(argv)[:40],
                 marks=() if i in IN_THE_FAST_LANE else pytest.mark.slow)
    for i, argv in enumerate(NASTY)])
def test_no_traceback_escapes_a_real_process(tmp_path, argv):
    done = subprocess.run([sys.executable, "-m", "pplab", *argv], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PPLAB_RUNS_DIR": str(tmp_path)})
    assert_clean(done.returncode, done.stdout, done.stderr, argv)


@pytest.mark.slow  # a second of Python start-up per example
@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.one_of(simulate_argv(), train_argv()))
def test_random_command_lines_in_a_real_process_end_without_a_traceback(tmp_path, argv):
    done = subprocess.run([sys.executable, "-m", "pplab", *argv], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PPLAB_RUNS_DIR": str(tmp_path)})
    assert_clean(done.returncode, done.stdout, done.stderr, argv)
