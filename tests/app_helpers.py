"""What the app tests share: open a page of the lab under AppTest, read a metric by label."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "app" / "lab.py")


def open_page(page: str | None = None) -> AppTest:
    """The lab, switched to ``views/PAGE.py`` when given, with no exception on the way."""
    app = AppTest.from_file(ENTRY, default_timeout=120).run()
    if page:
        app.switch_page(f"views/{page}.py").run()
    assert not app.exception, app.exception
    return app


def metric(app: AppTest, label_start: str) -> str:
    """The value of the first metric whose label starts with ``label_start``."""
    found = [m.value for m in app.metric if m.label.startswith(label_start)]
    assert found, f"no metric {label_start!r} among {[m.label for m in app.metric]}"
    return found[0]
