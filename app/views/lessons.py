"""Lessons: each folder under lessons/ is a text, a notebook, and an exercise drawn for you.

The learner types a name; the exercise's numbers come from it (the same ones
``pplab exercise show ID --learner NAME`` prints), and each answer is judged by the simulator
with the same checker and the same limited hints as the command line. The coding lab takes
an uploaded schedule file, run in a separate process, never in this one.

    streamlit run app/lab.py   (then open Lessons)
"""

import tempfile
from pathlib import Path

import streamlit as st

from pplab.exercises import AttemptBook, BadAnswer, check, find_lessons, learner_key
from pplab.exercises.schedule_lab import SKELETON, CodingLab, check_file
from pplab.resources import lessons_dir

st.title("Lessons")
lessons = find_lessons()
if not lessons:
    st.info(f"No lessons found under {lessons_dir()}.")
    st.stop()

lesson = st.selectbox("Lesson", lessons, format_func=lambda lesson: lesson.name,
                      key="lesson_pick")
learner = st.text_input("Your name (your numbers are drawn from it)", key="lesson_learner")
st.markdown(lesson.text)
st.caption(f"Notebook: {lesson.notebook} (open it in Jupyter, run top to bottom).")
exercise = lesson.exercise
if exercise is None:
    st.stop()

st.subheader("Your exercise")
try:
    who = learner_key(learner)
except BadAnswer as error:
    st.info(f"Type your name above to get your own numbers ({error}).")
    st.stop()

if isinstance(exercise, CodingLab):
    st.code(exercise.show(who))
    upload = st.file_uploader(f"Your {SKELETON}", type=["py"], key=f"lab_file_{who}")
    if upload is not None:
        with tempfile.TemporaryDirectory(prefix="pplab-upload-") as folder:
            path = Path(folder) / SKELETON
            path.write_bytes(upload.getvalue())
            with st.spinner("Running your file on the hidden cases..."):
                result = check_file(path, who)
        (st.success if result.all_right else st.warning)(
            f"{result.points} of {len(result.verdicts)} schedules on target")
        st.code(str(result))
    st.stop()

variant = exercise.variant(who)
st.write(exercise.intro.format(**variant.numbers))
book = AttemptBook()
for part in exercise.parts:
    question, *options = part.question(variant).splitlines()
    st.markdown(f"**({part.key})** {question}")
    key = f"lesson_answer_{exercise.id}_{part.key}_{who}"
    if part.kind == "choice":
        texts = dict(option.strip().split(": ", 1) for option in options)
        answer = st.radio("Your choice", list(texts), index=None, key=key,
                          format_func=lambda name, texts=texts: f"{texts[name]} ({name})")
    else:
        answer = st.text_input(f"Your answer: {part.how_to_answer().split(', quoted')[0]}",
                               key=key)
    if answer:
        try:
            verdict = check(exercise, who, {part.key: answer}, book=book)[0]
        except BadAnswer as error:
            st.warning(f"Cannot read it: {error}")
            continue
        (st.success if verdict.right else st.warning)(verdict.message)
