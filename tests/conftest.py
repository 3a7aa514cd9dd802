"""Settings for the whole test suite: how many examples a property test tries, no clock, and
what each test costs.

The fast lane (README, "Tests": ``-n auto -m "not multiprocess and not browser and not slow"``)
loads hypothesis's ``fast-lane`` profile: a property test tries 5 examples there, enough to
catch a broken property while you work; the whole suite (``pytest -q``, as CI runs it) loads
``whole-suite`` and tries 100. A test that names its own ``max_examples`` keeps it in both
(a count that is part of what it checks, or examples too cheap to matter).
``HYPOTHESIS_PROFILE=whole-suite`` runs the full count in the fast lane too.

Neither profile has a deadline or the too-slow health check: both time the examples on
the clock, and a busy machine would fail a correct test. A hang is pytest-timeout's.

``--cpu-costs N`` lists the N tests and files that took the most CPU seconds (this process
and the children it waited for): what to make cheaper or move to the whole suite. On a
machine other people load, CPU seconds move much less than the wall-clock ``--durations``.

    .venv/bin/python -m pytest -q -m "not multiprocess and not browser and not slow" --cpu-costs 20
"""

from __future__ import annotations

import os
import resource
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

NO_CLOCK = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("whole-suite", max_examples=100, **NO_CLOCK)
settings.register_profile("fast-lane", max_examples=5, **NO_CLOCK)


def in_fast_lane(markexpr: str) -> bool:
    """Whether a ``-m`` expression leaves the slow tests out (the fast lane does)."""
    return "not slow" in " ".join(markexpr.split())


def pytest_addoption(parser):
    parser.addoption("--cpu-costs", type=int, default=0, metavar="N",
                     help="list the N tests and files that took the most CPU seconds")


def pytest_configure(config):
    fast = in_fast_lane(config.getoption("markexpr", "") or "")
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                          or ("fast-lane" if fast else "whole-suite"))
    config.stash[CPU_COSTS] = Counter()


CPU_COSTS = pytest.StashKey[Counter]()
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium():
    """One headless Debian Chromium for a module of ``browser`` tests (starting it costs
    seconds; each test opens its own pages); they skip, saying why, where it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


def cpu_seconds() -> float:
    """User and system time of this process and of the children it has waited for."""
    own, children = (resource.getrusage(who)
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = cpu_seconds()
    yield
    item.config.stash[CPU_COSTS][item.nodeid] += cpu_seconds() - started


def pytest_terminal_summary(terminalreporter, config):
    shown = config.getoption("--cpu-costs")
    costs = config.stash.get(CPU_COSTS, Counter())
    if not shown or not costs:
        return
    per_file = Counter()
    for nodeid, seconds in costs.items():
        per_file[nodeid.split("::")[0]] += seconds
    write = terminalreporter.write_line
    terminalreporter.section(f"CPU seconds: {sum(costs.values()):.1f} in {len(costs)} tests")
    for title, table in (("files", per_file), ("tests", costs)):
        write(f"the {shown} costliest {title}:")
        for name, seconds in table.most_common(shown):
            write(f"{seconds:8.2f}  {name}")
