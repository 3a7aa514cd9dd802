"""What the app tests share: open a page of the lab under AppTest, read a metric by label."""

from __future__ import annotations

import html
import re
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


def text_blocks(app: AppTest) -> list[str]:
    """The text of every fixed-width block the page drew (app/text_blocks.py), as written."""
    found = (re.fullmatch(r'<pre class="pplab-text"[^>]*>(.*)</pre>', block.value, re.S)
             for block in app.html)
    return [html.unescape(match.group(1)) for match in found if match]
