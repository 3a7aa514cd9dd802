"""Lessons: each folder under lessons/ is a text, an exercise checked by code, and a notebook.

    streamlit run app/lab.py   (then open Lessons)
"""

import importlib.util
from pathlib import Path

import streamlit as st

LESSONS = Path(__file__).resolve().parents[2] / "lessons"

st.title("Lessons")
folders = sorted(p for p in LESSONS.glob("[0-9]*") if (p / "README.md").is_file())
if not folders:
    st.info(f"No lessons found under {LESSONS}.")
    st.stop()

folder = st.selectbox("Lesson", folders, format_func=lambda p: p.name, key="lesson_pick")
st.markdown((folder / "README.md").read_text())
st.caption(f"Notebook: {folder / 'lesson.ipynb'} (open it in Jupyter, run top to bottom).")

exercise_file = folder / "exercise.py"
if exercise_file.is_file():
    spec = importlib.util.spec_from_file_location(f"lesson_{folder.name}", exercise_file)
    exercise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exercise)
    st.subheader("Your answer")
    st.write(exercise.QUESTION)
    answer = st.text_input("Answer", key=f"lesson_answer_{folder.name}")
    if answer:
        right, message = exercise.check(answer)
        (st.success if right else st.warning)(message)
