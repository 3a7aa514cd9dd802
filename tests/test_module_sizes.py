"""Every module of the package and the app reads in one sitting: at most 350 lines.

A module that grows past it holds two ideas; split it along the one that is really separate
and name the new module for what it holds (engine/rank_watch.py beside supervisor.py,
formulas/zero_bubble.py beside pipeline.py), rather than raise the bound.

    .venv/bin/python -m pytest -q tests/test_module_sizes.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 350


def test_no_module_in_the_package_or_the_app_is_over_350_lines():
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for folder in ("pplab", "app") for path in (ROOT / folder).rglob("*.py")}
    assert sizes, "no modules found"
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}
