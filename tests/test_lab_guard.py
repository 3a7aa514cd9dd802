"""A learner who copies gets a clear refusal and no points, wherever the lab is graded.

The coding lab's file runs in the guard's child process (``pplab.exercises.guard``): a file
that reaches for pplab (directly, after clearing ``sys.modules``, through ``importlib`` or
``__import__``, by reading pplab's source from disk, through a subprocess that runs ``pplab
simulate --save-csv``), or starts a process, opens a socket, loads native code, writes outside
its folder or tries to disarm the hook, is refused with one line naming what it did, and the
whole file scores 0 in ``pplab exercise check``, in the notebook's checker and in ``pplab
exercise report``. An honest file using the standard library passes. The refused modules are
a parameter of the guard: a runtime lab imports torch, and still not pplab.

    .venv/bin/python -m pytest -q tests/test_lab_guard.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import schedule_lab_solution as solution

from pplab.exercises import guard, lab_runner
from pplab.exercises.lab_notebook import check_functions
from pplab.exercises.report import csv_table, grade_folder, json_table
from pplab.exercises.schedule_lab import TARGETS, check_file

ROOT = Path(__file__).resolve().parents[1]
PPLAB_DIR = ROOT / "pplab"
SOLUTION = (ROOT / "tests" / "schedule_lab_solution.py").read_text()
PPLAB_BIN = str(Path(sys.executable).parent / "pplab")

# (name, code put at the top of an otherwise correct file, what the refusal names)
COPIES = [
    ("direct", "from pplab.schedules import build\n", "import of pplab.schedules"),
    ("cleared", "import sys\nfor name in [n for n in sys.modules if n.startswith('pplab')]:\n"
                "    del sys.modules[name]\nimport pplab.schedules.simple\n", "import of pplab"),
    ("importlib", "import importlib\nbuild = importlib.import_module('pplab.schedules').build\n",
     "import of pplab"),
    ("dunder", "build = __import__('pplab.schedules', fromlist=['build']).build\n",
     "import of pplab"),
    ("path", f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport pplab\n", "import of pplab"),
    ("caught", "try:\n    import pplab\nexcept BaseException:\n    pass\n", "import of pplab"),
    ("source", f"exec(open({str(PPLAB_DIR / 'schedules' / 'simple.py')!r}).read())\n",
     "it is part of pplab"),
    ("climb", "open('../../../../../../' + "
              f"{str(PPLAB_DIR / '__init__.py').lstrip('/')!r}).read()\n", "a path with .."),
    ("subprocess", "import subprocess\nsubprocess.run([" + repr(PPLAB_BIN) + ", 'simulate', "
                   "'--schedule', '1f1b', '--pp', '2', '--microbatches', '2', '--save-csv', "
                   "'x.csv'])\n", "import of subprocess"),
    ("system", f"import os\nos.system({PPLAB_BIN + ' simulate --schedule 1f1b --pp 2'!r})\n",
     "os.system"),
    ("exec", "import os\nos.execv('/bin/true', ['true'])\n", "os.exec"),
    ("fork", "import os\nos.fork()\n", "os.fork"),
    ("spawn", "import _posixsubprocess\n", "import of _posixsubprocess"),
    ("socket", "import socket\n", "import of socket"),
    ("ctypes", "import ctypes\n", "import of ctypes"),
    ("torch", "import torch\n", "import of torch"),
    ("write", "open('/tmp/pplab-guard-test-was-here', 'w').write('x')\n", "may write only"),
    ("environ", "open('/proc/self/environ').read()\n", "may read only"),
    ("kill", "import os\nos.kill(os.getppid(), 0)\n", "os.kill"),
    ("gc", "import gc\ngc.get_objects()\n", "gc.get_objects"),
    ("rewrite", "def f():\n    pass\nf.__code__ = (lambda: 1).__code__\n", "__code__"),
    ("finder", "import sys\nsys.meta_path.clear()\nsys.path.append(" + repr(str(ROOT))
               + ")\nimport pplab\n", "import of pplab"),
]


def copied(tmp_path: Path, name: str, code: str, learner: str | None = None) -> Path:
    path = tmp_path / f"{name}.py"
    text = SOLUTION.replace('"reference"', repr(learner or name).replace("'", '"'))
    path.write_text(code + "\n" + text)
    return path


@pytest.mark.parametrize("name, code, named", COPIES, ids=[c[0] for c in COPIES])
def test_a_file_that_copies_or_escapes_is_refused_with_no_points(tmp_path, name, code, named):
    result = check_file(copied(tmp_path, name, code), "ada")
    assert result.points == 0 and result.refused, str(result)
    assert result.refused.startswith("refused: ") and named in result.refused, result.refused
    assert "\n" not in result.refused and "Traceback" not in str(result)
    assert all("not graded: the file was refused" in v.message for v in result.verdicts)
    assert "(no points)" in str(result) and "0 of 3 schedules on target" in str(result)
    assert not Path("/tmp/pplab-guard-test-was-here").exists()


def test_the_same_file_without_the_copy_passes(tmp_path):
    honest = copied(tmp_path, "honest", "import json, itertools, dataclasses, typing, random\n")
    assert check_file(honest, "ada").all_right


@pytest.mark.slow  # grades nine guarded files
def test_the_report_gives_each_copy_a_refusal_and_no_points(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, code, _ in COPIES[:8] + COPIES[8:9]:  # pplab every way, and the subprocess
        copied(folder, name, code, learner=name)
    copied(folder, "honest", "", learner="honest")
    rows, ids, skipped = grade_folder(folder, ["schedule-lab"])
    by_name = {row.learner: row for row in rows}
    assert not skipped and by_name["honest"].scores["schedule-lab"] == (3, 3)
    for name, _, named in COPIES[:9]:
        row = by_name[name]
        assert row.scores["schedule-lab"] == (0, 3), name
        assert any(note.startswith("schedule-lab: refused: ") and named in note
                   for note in row.notes), row.notes
    table = csv_table(rows, ids)
    assert "direct,0,0,3" in table and "honest,3,3,3" in table
    parts = json.loads(json_table(rows, ids, skipped))["learners"][0]["scores"]
    assert [p["right"] for p in parts["schedule-lab"]["parts"]] == [False] * len(TARGETS)


def test_the_notebooks_checker_grades_in_the_same_guard():
    assert check_functions({"gpipe": solution.gpipe, "one_f_one_b": solution.one_f_one_b,
                            "zb_h1": solution.zb_h1}, "ada").all_right
    namespace: dict = {}
    exec(compile("from pplab.schedules import build\n\ndef gpipe(p, m):\n"
                 "    return {r: [str(a) for a in build('gpipe', p, m).actions[r]] "
                 "for r in range(p)}\n", "notebook-cell", "exec"), namespace)
    import linecache

    linecache.cache["notebook-cell"] = (0, None, [
        "from pplab.schedules import build\n", "\n", "def gpipe(p, m):\n",
        "    return {r: [str(a) for a in build('gpipe', p, m).actions[r]] for r in range(p)}\n"],
        "notebook-cell")
    result = check_functions({"gpipe": namespace["gpipe"], "one_f_one_b": solution.one_f_one_b,
                              "zb_h1": solution.zb_h1}, "ada")
    assert result.points == 0 and "import of pplab" in (result.refused or ""), str(result)


@pytest.mark.slow  # imports torch in the guarded child (seconds)
def test_the_refused_modules_are_a_parameter_torch_for_a_runtime_lab(tmp_path):
    """The runtime lab of issue 24: torch imports in the guard, pplab still does not."""
    learner = tmp_path / "runtime.py"
    learner.write_text("import torch\n\ndef gpipe(p, m):\n    return [[] for _ in range(p)]\n")
    request = {"functions": [{"name": "gpipe", "signature": "p, m", "cases": [[2, 2]]}],
               "max_actions_per_rank": 100, "max_printed_chars": 1000}
    outcome = guard.run_guarded(Path(lab_runner.__file__), learner, request,
                                policy=guard.RUNTIME_LAB, timeout=120, memory_bytes=8 * 2**30)
    assert outcome.refused is None and outcome.answer["results"]["gpipe"][0]["orders"] == [[], []]
    learner.write_text("import torch\nimport pplab\n")
    outcome = guard.run_guarded(Path(lab_runner.__file__), learner, request,
                                policy=guard.RUNTIME_LAB, timeout=120, memory_bytes=8 * 2**30)
    assert outcome.refused and "import of pplab" in outcome.refused
    assert "torch" in guard.SCHEDULE_LAB.refused_modules and "torch" not in \
        guard.RUNTIME_LAB.refused_modules
