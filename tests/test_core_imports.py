"""The core imports no torch: schedules, simulator, formulas, timeline, charts, plan checks.

That is what keeps the app's Playground, the lessons and most tests fast and runnable on a
machine without torch. Each module is imported in a fresh interpreter where ``import torch``
fails, so a module that needs torch at import time, even through another one, shows here.
Nothing in the package imports streamlit either: the app's pages are its only users.

    .venv/bin/python -m pytest -q tests/test_core_imports.py
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap

import pplab

# The core by name (DESIGN.md), so a rename cannot quietly drop one from the check...
CORE = ["pplab.schedules", "pplab.sim.simulator", "pplab.formulas.pipeline", "pplab.timeline",
        "pplab.charts", "pplab.runs.catalog", "pplab.engine.request"]
# ...and, beside it, every other module outside the engine, plus the engine's command
# modules, which `pplab --help` imports. pplab.__main__ is left out: importing it runs the CLI.
ENGINE_COMMANDS = ["pplab.engine", "pplab.cli.train",
                   "pplab.cli.compare"]


def torch_free_modules() -> list[str]:
    found = [info.name for info in pkgutil.walk_packages(pplab.__path__, "pplab.")
             if not info.name.startswith(("pplab.engine", "pplab._", "pplab.__main__"))]
    return sorted(set(CORE) | set(found) | set(ENGINE_COMMANDS))


BLOCK_TORCH_AND_IMPORT = textwrap.dedent("""
    import importlib, json, sys

    class Blocked:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "streamlit"):
                raise ImportError(f"import of {name} blocked: the core must not need it")
            return None

    sys.meta_path.insert(0, Blocked)
    failures = {}
    for module in json.loads(sys.argv[1]):
        try:
            importlib.import_module(module)
        except Exception as error:
            failures[module] = f"{type(error).__name__}: {error}"
    from pplab.cli.main import build_parser
    build_parser()  # registers train, compare and lab: none may import torch to do so
    loaded = sorted({"torch", "streamlit"} & set(sys.modules))
    print(json.dumps({"failures": failures, "loaded": loaded}))
""")


def test_the_core_imports_neither_torch_nor_streamlit():
    modules = torch_free_modules()
    assert set(CORE) <= set(modules)
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH_AND_IMPORT, json.dumps(modules)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}, "\n".join(f"{m}: {e}"
                                               for m, e in result["failures"].items())
    assert result["loaded"] == []


def test_the_check_would_catch_a_module_that_imports_torch():
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH_AND_IMPORT,
                           json.dumps(["pplab.engine.model"])],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "torch" in result["failures"]["pplab.engine.model"]
