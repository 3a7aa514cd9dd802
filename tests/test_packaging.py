"""pplab installs as a package: a plain `pip install .` finds its runs, lessons and app.

The fast checks read pyproject.toml and ``pplab.runs.resources`` in this checkout. The slow one
builds a wheel, installs it (not editable) into a fresh virtual environment and, from another
folder, runs `pplab simulate`, lists the bundled runs and opens the app's Runs page. The new
environment sees this one's site-packages for torch, streamlit and pandas, so nothing is
downloaded.

    .venv/bin/python -m pytest -q tests/test_packaging.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from pplab.runs import resources

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# The folders of the checkout that install inside the package, as pplab._app and so on.
BESIDE = {package: ROOT / folder for package, folder in SETUPTOOLS["package-dir"].items()}
SOURCES = ("pyproject.toml", "README.md", "pplab", *SETUPTOOLS["package-dir"].values())


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_pyproject_lists_every_package():
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "pplab").rglob("__init__.py")
               if "__pycache__" not in init.parts}
    listed = set(SETUPTOOLS["packages"])
    missing = sorted(on_disk - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    for package, folder in BESIDE.items():
        assert package in listed and (folder / "__init__.py").is_file(), package


def test_resources_name_the_folders_of_the_checkout():
    # An editable install maps pplab._data and friends back onto this checkout.
    assert resources.bundled_runs_dir() == ROOT / "data" / "runs"
    assert resources.bundled_comparisons_dir() == ROOT / "data" / "comparisons"
    assert resources.example_schedules_dir() == ROOT / "data" / "schedules"
    assert resources.lessons_dir() == ROOT / "lessons"
    assert resources.app_entry() == ROOT / "app" / "lab.py"


def test_resources_hold_what_the_lab_shows():
    assert list(resources.bundled_runs_dir().glob("*/meta.json"))
    assert list(resources.bundled_comparisons_dir().glob("*/comparison.json"))
    assert list(resources.example_schedules_dir().glob("*.csv"))
    assert list(resources.lessons_dir().glob("[0-9][0-9]*-*/README.md"))
    assert resources.app_entry().is_file() and (resources.app_dir() / "views").is_dir()


def _copy_sources(target: Path) -> Path:
    """What a wheel is built from, copied so the build leaves nothing in the checkout."""
    target.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)
    return target


def _run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PPLAB_RUNS_DIR"] = str(cwd / "my-runs")  # none yet: only the bundled ones show
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_a_plain_install_works_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--quiet", "-w", str(wheels), str(_copy_sources(tmp_path / "src"))], cwd=tmp_path)
    (wheel,) = wheels.glob("pplab-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in BESIDE.items():
        prefix = package.replace(".", "/")
        left_out = sorted(f for f in _files(folder) if f"{prefix}/{f}" not in shipped)
        assert not left_out, f"the wheel leaves out {left_out} of {folder.name}/"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    # torch, streamlit and pandas come from this environment, added only now so that pip
    # never saw its pplab. Only a site folder's own .pth files are read, so this
    # environment's editable pplab (a .pth file here) stays out of the new one.
    site = Path(sysconfig.get_paths()["purelib"])
    new_site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (new_site / "outer.pth").write_text(f"{site}\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    simulated = _run([str(venv / "bin" / "pplab"), "simulate", "--pp", "4", "--microbatches",
                      "8", "--schedule", "1f1b"], cwd=elsewhere)
    assert "makespan         33 cost units (simulated)" in simulated.stdout

    check = textwrap.dedent(f"""
        from pathlib import Path
        import pplab
        from pplab.cli import lab as lab_command
        from pplab.runs import catalog as runs_catalog, resources
        from streamlit.testing.v1 import AppTest

        installed = Path(pplab.__file__).parent
        assert installed.is_relative_to({str(venv)!r}), installed
        for found in (resources.bundled_runs_dir(), resources.bundled_comparisons_dir(),
                      resources.example_schedules_dir(), resources.lessons_dir()):
            assert found.is_dir() and found.is_relative_to(installed), found
        bundled = sorted(resources.bundled_runs_dir().glob("*/meta.json"))
        assert bundled, "no bundled runs installed"
        assert lab_command.app_entry() == installed / "_app" / "lab.py"

        entries, problems = runs_catalog.find_runs()
        listed = {{Path(e.run.path).resolve() for e in entries}}
        missing = [m.parent.name for m in bundled if m.parent.resolve() not in listed]
        assert not missing, f"pplab.runs.catalog does not list the installed runs {{missing}}"

        app = AppTest.from_file(str(lab_command.app_entry()), default_timeout=120).run()
        app.switch_page("views/runs.py").run()
        assert not app.exception, app.exception
        shown = app.selectbox(key="runs_pick").options
        assert len(shown) >= len(bundled), shown
        print(len(bundled), "bundled runs listed")
    """)
    listed = _run([str(python), "-c", check], cwd=elsewhere)
    assert "bundled runs listed" in listed.stdout
