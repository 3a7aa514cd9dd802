"""Where the files pplab ships live: bundled runs, comparisons, example schedules, lessons, app.

In a checkout they sit at the top of the repository (``data/``, ``lessons/``, ``app/``), where
learners open them. pyproject.toml installs the same folders as the packages ``pplab._data``,
``pplab._lessons`` and ``pplab._app``, so ``importlib.resources`` finds them in an editable
install (which points back at the checkout) and in a plain ``pip install .`` (which copies
them into site-packages) alike. Nothing else in pplab should work out a path from
``__file__``: ask here.

    python -m pplab.runs.resources
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DATA_PACKAGE = "pplab._data"
LESSONS_PACKAGE = "pplab._lessons"
APP_PACKAGE = "pplab._app"


def _package_dir(package: str) -> Path:
    """The folder of an installed package, as a real path on disk.

    Streamlit, pandas and the notebooks need real files, so a zipped install (where
    ``files()`` is no folder) is refused with one clear line rather than copied to a
    temporary folder on every call.
    """
    try:
        root = files(package)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"{package} is not installed with this copy of pplab; reinstall it from a "
            f"checkout with `bash install.sh`") from None
    if not isinstance(root, Path):
        raise FileNotFoundError(f"{package} is installed as {root!r}, not as a folder on disk; "
                                f"pplab needs an unzipped install")
    return root


def bundled_runs_dir() -> Path:
    """Measured runs that ship with pplab, one run directory each (``data/runs``)."""
    return _package_dir(DATA_PACKAGE) / "runs"


def bundled_comparisons_dir() -> Path:
    """Comparisons that ship with pplab, one ``pplab compare`` output each
    (``data/comparisons``)."""
    return _package_dir(DATA_PACKAGE) / "comparisons"


def example_schedules_dir() -> Path:
    """Example schedule CSVs to simulate, validate, or start your own from
    (``data/schedules``)."""
    return _package_dir(DATA_PACKAGE) / "schedules"


def lessons_dir() -> Path:
    """The lessons, one ``NN-name/`` folder each (``lessons/``)."""
    return _package_dir(LESSONS_PACKAGE)


def app_dir() -> Path:
    """The Streamlit app's folder (``app/``): the entry script and its pages in ``views/``."""
    return _package_dir(APP_PACKAGE)


def app_entry() -> Path:
    """The script ``streamlit run`` starts (``app/lab.py``)."""
    return app_dir() / "lab.py"


def main() -> int:
    for name in ("bundled_runs_dir", "bundled_comparisons_dir", "example_schedules_dir",
                 "lessons_dir", "app_entry"):
        path = globals()[name]()
        print(f"{name + '()':<26} {path}{'' if path.exists() else '  (missing)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
