"""Lessons: each folder under lessons/ is a text, an exercise checked by code, and a notebook.

    streamlit run app/lab.py   (then open Lessons)
"""

import streamlit as st

from pplab.exercises import find_lessons, load_exercise
from pplab.resources import lessons_dir

st.title("Lessons")
lessons = find_lessons()
if not lessons:
    st.info(f"No lessons found under {lessons_dir()}.")
    st.stop()

lesson = st.selectbox("Lesson", lessons, format_func=lambda lesson: lesson.name,
                      key="lesson_pick")
st.markdown(lesson.text)
st.caption(f"Notebook: {lesson.notebook} (open it in Jupyter, run top to bottom).")

if lesson.exercise_file.is_file():
    exercise = load_exercise(lesson)
    st.subheader("Your answer")
    st.write(exercise.QUESTION)
    answer = st.text_input("Answer", key=f"lesson_answer_{lesson.name}")
    if answer:
        right, message = exercise.check(answer)
        (st.success if right else st.warning)(message)
