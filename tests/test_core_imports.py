"""The core imports no torch, and pplab/ and app/ import in one direction only: no circle.

The core (DESIGN.md: schedules, sim, formulas, timeline, charts, planner, calibration) keeps
the app's Playground, the lessons and most tests fast and runnable on a machine without
torch. Every module of it, found by walking the packages (a new module is checked the day it
is added), is imported in a fresh ``python -c`` where a meta path finder refuses ``import
torch``, so a module that needs torch at import time, even through another one, shows here.
Outside the engine nothing needs torch to import either, and nothing in the package imports
streamlit: the app's pages are its only users.

The layers (LAYOUT.md) only work if imports run one way. The graph of who imports whom is
read from the source (``ast``: nothing is imported), and its strongly connected components
are the circles; the test is shown to find one in a small package written for it.

    .venv/bin/python -m pytest -q tests/test_core_imports.py
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pplab

ROOT = Path(__file__).resolve().parent.parent
CORE_PACKAGES = ("pplab.schedules", "pplab.sim", "pplab.formulas", "pplab.timeline",
                 "pplab.charts", "pplab.planner", "pplab.calibration")
MAX_LOOSE_MODULES = 5  # .py files directly in pplab/: the ground floor and the entry points


def submodules(package: str) -> list[str]:
    """``package`` and every module below it, found on disk by pkgutil."""
    found = importlib.import_module(package)
    return [package] + [info.name for info in
                        pkgutil.walk_packages(found.__path__, f"{package}.")]


def core_modules() -> list[str]:
    return sorted(name for package in CORE_PACKAGES for name in submodules(package))


def outside_the_engine() -> list[str]:
    """Every other module but the engine's; pplab.__main__ is left out: importing it runs
    the CLI."""
    return sorted(name for name in submodules("pplab")
                  if not name.startswith(("pplab.engine", "pplab.__main__"))
                  and name not in GUARDED_TORCH_SCRIPTS)


# Run by the guard as a script in a child process of its own, to drive torch.distributed
# there; pplab refers to its path and never imports it.
GUARDED_TORCH_SCRIPTS = ("pplab.exercises.runtime_task", "pplab.exercises.runtime_recording")


# Run as ``python -c SCRIPT MODULES_JSON``: import each module with torch and streamlit
# refused, then build the CLI's parser, and print what failed and what got loaded anyway.
BLOCK_TORCH_AND_IMPORT = textwrap.dedent("""
    import importlib, json, sys

    class Refuse:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "streamlit"):
                raise ImportError(f"import of {name} blocked: the core must not need it")
            return None

    sys.meta_path.insert(0, Refuse)
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


def import_without_torch(modules: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH_AND_IMPORT, json.dumps(modules)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def imported_without_torch() -> dict:
    """One fresh interpreter imports every module outside the engine (the core among them)."""
    return import_without_torch(outside_the_engine())


def _failures(result: dict, modules: list[str]) -> str:
    return "\n".join(f"{m}: {e}" for m, e in result["failures"].items() if m in modules)


def test_every_core_module_imports_without_torch_or_streamlit(imported_without_torch):
    modules = core_modules()
    # Walked, not listed: each core package and the modules inside it are all there.
    assert set(CORE_PACKAGES) < set(modules) <= set(outside_the_engine())
    assert {"pplab.sim.simulator", "pplab.formulas.pipeline", "pplab.timeline.events",
            "pplab.calibration.fit"} <= set(modules)
    assert _failures(imported_without_torch, modules) == ""
    assert imported_without_torch["loaded"] == []


def test_every_module_outside_the_engine_and_the_cli_parser_import_without_torch(
        imported_without_torch):
    modules = outside_the_engine()
    assert {"pplab.runs.catalog", "pplab.cli.main", "pplab.classroom.training_jobs"} <= \
        set(modules)
    assert _failures(imported_without_torch, modules) == ""
    assert imported_without_torch["loaded"] == []


@pytest.mark.slow  # starts Python
def test_the_torch_check_would_catch_a_module_that_imports_torch():
    result = import_without_torch(["pplab.engine.model"])
    assert "torch" in result["failures"]["pplab.engine.model"]


# ---- import circles -------------------------------------------------------------------------

def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file, for every .py file under each package folder of ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """Every name an import statement of the file reaches, in functions too, made absolute:
    ``from a import b`` reaches ``a`` and ``a.b`` (b may be a module or a name in a)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:  # relative: from the package the file is in, up level - 1
                package = module.split(".") if path.name == "__init__.py" \
                    else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path, packages: tuple[str, ...],
                 on_path: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports. A package folder in ``on_path`` is
    also on sys.path when it runs (Streamlit runs app/lab.py with app/ on it), so its modules
    may import each other without the package's name."""
    files = module_files(root, packages)
    graph = {}
    for module, path in files.items():
        prefixes = [""] + [f"{p}." for p in on_path if module.startswith(f"{p}.")]
        edges = set()
        for name in imported_names(module, path):
            for target in (prefix + name for prefix in prefixes):
                while target and target not in files:  # the longest known module it names
                    target = target.rpartition(".")[0]
                # A module importing a package it lies in reads that __init__ first: that
                # is no circle of design, so those edges are left out.
                if target and target != module and not module.startswith(f"{target}."):
                    edges.add(target)
        graph[module] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, without
    recursion): each is a set of modules that import each other, through others or not."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in graph:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


@pytest.mark.slow  # starts Python
def test_pplab_and_app_have_no_import_circle():
    graph = import_graph(ROOT, ("pplab", "app"), on_path=("app",))
    assert len(graph) > 100 and graph["pplab.sim.simulator"]  # the graph was read at all
    assert circles(graph) == [], "modules that import each other: " + "; ".join(
        " <-> ".join(circle) for circle in circles(graph))


def test_the_circle_check_finds_a_circle_added_to_a_small_package(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {"__init__.py": "from pkg import a\n",  # a package importing its own module
             "a.py": "from . import b\n",
             "b.py": "def later():\n    import pkg.sub.c\n",  # inside a function: counted
             "sub/__init__.py": "",
             "sub/c.py": "from ..a import something\n",  # back to a: the circle
             "d.py": "from pkg.a import something\nimport json\n"}  # into it, not back
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.sub.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (package / "sub" / "c.py").write_text("import json\n")  # the way back removed
    assert circles(import_graph(tmp_path, ("pkg",))) == []
    # and on a graph given by hand: two circles, a module that only points into one
    assert circles({"x": {"y"}, "y": {"x"}, "z": {"x", "w"}, "w": {"v"}, "v": {"w"}}) == [
        ["v", "w"], ["x", "y"]]


def test_app_modules_that_import_each_other_from_the_apps_folder_are_one_graph(tmp_path):
    app = tmp_path / "app"
    (app / "views").mkdir(parents=True)
    (app / "widgets.py").write_text("from views.page import draw\n")  # as Streamlit runs it
    (app / "views" / "page.py").write_text("from app.widgets import helper\n")
    assert circles(import_graph(tmp_path, ("app",), on_path=("app",))) == [
        ["app.views.page", "app.widgets"]]


def test_at_most_five_modules_lie_directly_in_pplab():
    loose = sorted(path.name for path in Path(pplab.__file__).parent.glob("*.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, f"{len(loose)} modules directly in pplab/: " \
        f"{', '.join(loose)}; put each in the folder of its layer (LAYOUT.md)"
