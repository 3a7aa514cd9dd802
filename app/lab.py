"""The pplab lab: one Streamlit entry, one thin page per view under app/views.

Start it with the CLI, which binds to this machine only by default:

    pplab lab
    streamlit run app/lab.py
"""

import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
# Views import the shared helpers beside this file, whoever starts the app (CLI or AppTest).
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

st.set_page_config(page_title="pplab: pipeline parallelism lab", layout="wide")

from classroom_gate import sidebar_badge  # noqa: E402  (needs APP_DIR on the path)

VIEWS = APP_DIR / "views"
pages = [
    st.Page(VIEWS / "playground.py", title="Playground", url_path="playground", default=True),
    st.Page(VIEWS / "compare.py", title="Compare", url_path="compare"),
    st.Page(VIEWS / "planner.py", title="Planner", url_path="planner"),
    st.Page(VIEWS / "run.py", title="Run", url_path="run"),
    st.Page(VIEWS / "runs.py", title="Runs", url_path="runs"),
    st.Page(VIEWS / "lessons.py", title="Lessons", url_path="lessons"),
    st.Page(VIEWS / "presenter.py", title="Presenter", url_path="presenter"),
]
sidebar_badge()
st.navigation(pages).run()
