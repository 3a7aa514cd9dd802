"""Settings for the whole test suite: how many examples a property test tries, and no clock.

The fast lane (README, "Tests": ``-m "not multiprocess and not browser and not slow"``)
loads hypothesis's ``fast-lane`` profile: a property test tries 10 examples there, enough to
catch a broken property while you work; the whole suite (``pytest -q``, as CI runs it) loads
``whole-suite`` and tries 100. A test that names its own ``max_examples`` keeps it in both
(a count that is part of what it checks, or examples too cheap to matter).
``HYPOTHESIS_PROFILE=whole-suite`` runs the full count in the fast lane too.

Neither profile has a deadline or the too-slow health check: both time the examples on
the clock, and a busy machine would fail a correct test. A hang is pytest-timeout's.

    .venv/bin/python -m pytest -q -m "not multiprocess and not browser and not slow"
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

NO_CLOCK = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("whole-suite", max_examples=100, **NO_CLOCK)
settings.register_profile("fast-lane", max_examples=10, **NO_CLOCK)


def in_fast_lane(markexpr: str) -> bool:
    """Whether a ``-m`` expression leaves the slow tests out (the fast lane does)."""
    return "not slow" in " ".join(markexpr.split())


def pytest_configure(config):
    fast = in_fast_lane(config.getoption("markexpr", "") or "")
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                          or ("fast-lane" if fast else "whole-suite"))
