"""Lessons: a guided path through every lesson, in order, each with its widget and exercise.

A lesson shows what it teaches (its "You will learn" list) at the top, then its text, then its
widget (the lesson's own interactive view, not a link elsewhere), then the learner's exercises:
numbers drawn from the learner's name (the same ones ``pplab exercise show ID --learner NAME``
prints), each answer judged when it is submitted (its Check button: a choice is not judged at
every click) by the simulator, with the same checker, tries and limited hints as the command
line. Progress (parts answered right) is kept for the browser session and shown beside the
path. The page's address holds the lesson and its widget's configuration, so a link opens
exactly the view it was copied from. A coding lab takes an uploaded file, run in the guard's
child processes (``pplab.exercises.guard``), never in this one; the runtime lab then draws the
learner's runtime beside pplab's engine on the same schedule.

    streamlit run app/lab.py   (then open Lessons; or /lessons?lesson=01-the-bubble&p=8)
"""

import hashlib
import json
import re
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st
from classroom_gate import instructor_only
from lesson_widgets import widget_for
from lesson_widgets.reading import quoted
from text_blocks import markdown_with_text_blocks, text_block

from pplab.classroom.passcode import in_classroom
from pplab.exercises import AttemptBook, BadAnswer, check, find_lessons, learner_key
from pplab.exercises.attempts import SessionBook, submission
from pplab.exercises.coding_lab import CodingLab
from pplab.runs.resources import lessons_dir

PROGRESS = "lesson_progress"  # session state: lesson name -> the part keys answered right
PATH = "lesson_path"  # the sidebar's path, one step per lesson

st.title("Lessons")
lessons = find_lessons()
if not lessons:
    st.info(f"No lessons found under {lessons_dir()}.")
    st.stop()
by_name = {lesson.name: lesson for lesson in lessons}
progress: dict[str, set[str]] = st.session_state.setdefault(PROGRESS, {})

# A link names a lesson and its widget's configuration; it is read once, on arrival.
link = dict(st.query_params)
if "lesson_link_read" not in st.session_state:
    st.session_state["lesson_link_read"] = True
    if link.get("lesson") in by_name:
        st.session_state["lesson_pick"] = by_name[link["lesson"]].folder
    elif "lesson" in link:
        st.caption(f"No lesson {quoted(link['lesson'], 60)} here; starting at the first one.")
    st.session_state["lesson_link_config"] = {k: v for k, v in link.items() if k != "lesson"}
    st.session_state["lesson_link_for"] = link.get("lesson")


def parts_of(lesson) -> list[str]:
    """What the path counts for a lesson: each part of each exercise, a coding lab as one."""
    return [f"{exercise.id}:{part.key}" for exercise in lesson.exercises
            for part in getattr(exercise, "parts", ())] + [
        f"{exercise.id}:file" for exercise in lesson.exercises if not hasattr(exercise, "parts")]


def mark(lesson) -> str:
    done, total = len(progress.get(lesson.name, ())), len(parts_of(lesson))
    return "✓" if done >= total else (f"{done}/{total}" if done else "·")


folders = [lesson.folder for lesson in lessons]


def step(offset: int) -> None:
    here = folders.index(st.session_state.get("lesson_pick", folders[0]))
    st.session_state["lesson_pick"] = folders[max(0, min(len(folders) - 1, here + offset))]


path_box = st.sidebar.container()


def finish() -> None:
    """Draw the path with this run's progress (answers are judged below it), then stop."""
    with path_box:
        st.header("Your path")
        # each step of the path opens its lesson, in this session (a link would start a new
        # one, without the progress kept here); it follows the lesson picked elsewhere
        st.session_state[PATH] = st.session_state.get("lesson_pick", folders[0])
        st.radio("Your path", folders, key=PATH, label_visibility="collapsed",
                 on_change=open_lesson, format_func=lambda folder: (
                     f"{mark(by_name[folder.name])} {folders.index(folder) + 1}. "
                     f"{by_name[folder.name].title.split(': ', 1)[-1]}"))
        answered = sum(len(progress.get(entry.name, ())) for entry in lessons)
        total = sum(len(parts_of(entry)) for entry in lessons)
        st.progress(answered / total, text=f"{answered} of {total} exercise parts answered "
                                           f"right this session")
    st.stop()


def open_lesson() -> None:
    st.session_state["lesson_pick"] = st.session_state[PATH]


lesson = st.selectbox("Lesson", folders, key="lesson_pick",
                      format_func=lambda folder: by_name[folder.name].title)
lesson = by_name[lesson.name]
back, forward, _ = st.columns([1, 1, 6])
back.button("Previous", on_click=step, args=(-1,), disabled=lesson.folder == folders[0],
            key="lesson_previous")
forward.button("Next", on_click=step, args=(1,), disabled=lesson.folder == folders[-1],
               key="lesson_next")

learner = st.text_input("Your name (your numbers are drawn from it)", key="lesson_learner")
title, *body = lesson.text.splitlines()
st.markdown(title)
if lesson.objectives:
    with st.container(border=True):
        st.markdown("**You will learn**\n\n" + "\n".join(f"* {o}" for o in lesson.objectives))
    heading = next(i for i, line in enumerate(body) if "you will learn" in line.casefold())
    after = next((i for i in range(heading + 1, len(body)) if body[i].startswith("#")),
                 len(body))
    body = body[:heading] + body[after:]
markdown_with_text_blocks("\n".join(body))
st.caption(f"Notebook: {lesson.notebook} (open it in Jupyter, run top to bottom).")

widget = widget_for(lesson.name)
if widget is not None:
    st.subheader("Try it")
    linked = st.session_state.get("lesson_link_for") == lesson.name
    config = dict(widget.DEFAULTS) | (st.session_state["lesson_link_config"] if linked else {})
    try:
        shown = widget.show(config)
    except Exception as error:  # a widget's bug must not take the lesson's text and exercise
        st.error(f"This widget failed: {type(error).__name__}: {str(error)[:200]}")
    else:
        address = urlencode({"lesson": lesson.name, **shown})
        st.query_params.from_dict({"lesson": lesson.name, **shown})
        st.caption(f"A link to exactly this view: `/lessons?{address}`")

if not lesson.exercises:
    finish()

st.subheader("Your exercise")
try:
    who = learner_key(learner)
except BadAnswer as error:
    st.info(f"Type your name above to get your own numbers ({error}).")
    finish()


def coding_lab(exercise: CodingLab) -> None:
    """The lab's instructions, and an uploaded file graded in the guard's child processes
    (once per file: a rerun of the page reads the grade kept for this session)."""
    text_block(exercise.show(who))
    if not instructor_only("run uploaded code (the grader starts a process); work in the "
                           "notebook or with pplab exercise on your own machine"):
        return
    upload = st.file_uploader(f"Your {exercise.skeleton}", type=["py"],
                              key=f"lab_file_{exercise.id}_{who}")
    if upload is None:
        return
    key = (exercise.id, who, hashlib.sha256(upload.getvalue()).hexdigest())
    kept = st.session_state.setdefault("lab_grade", {})
    with tempfile.TemporaryDirectory(prefix="pplab-upload-") as folder:
        path = Path(folder) / exercise.skeleton
        path.write_bytes(upload.getvalue())
        if key not in kept:
            with st.spinner("Running your file on the hidden cases..."):
                kept.clear()  # one grade kept: the latest file's
                kept[key] = exercise.check_file(path, who)
        result = kept[key]
        (st.success if result.all_right else st.warning)(
            f"{result.points} of {result.total} {result.noun}")
        text_block(str(result))
        if result.all_right:
            progress.setdefault(lesson.name, set()).add(f"{exercise.id}:file")
        right = [v.part for v in result.verdicts if v.right]
        if exercise.id == "runtime-lab" and right:
            runtime_timeline(path, right)


def runtime_timeline(path: Path, parts: list[str]) -> None:
    """The learner's runtime (a part it passes) above pplab's engine on the same schedule."""
    from pplab.exercises.runtime_timeline import compare

    part = st.selectbox("Your runtime to draw", parts, key="runtime_lab_part")
    if st.button("Draw its timeline beside pplab's engine", key="runtime_lab_draw"):
        with st.spinner("Running three steps of yours and three of the engine's..."):
            figure, lines = compare(path, part)
        if figure is None:
            st.warning(lines[0])
        else:
            st.plotly_chart(figure, key="runtime_lab_gantt")
            st.write("; ".join(lines))


def questions(exercise, book: AttemptBook) -> None:
    """Each part in a form of its own: an answer is judged (and counted as a try) when it is
    submitted, not at every click or keystroke; the verdict stays until the next submit."""
    variant = exercise.variant(who)
    st.write(exercise.intro.format(**variant.numbers))
    if exercise.figure:
        text_block(exercise.figure.format(**variant.numbers))
    said = st.session_state.setdefault("lesson_verdicts", {})
    for part in exercise.parts:
        question, *options = part.question(variant).splitlines()
        st.markdown(f"**({part.key})** {question}")
        key = f"lesson_answer_{exercise.id}_{part.key}_{who}"
        with st.form(f"{key}_form", border=False):
            if part.kind == "choice":
                texts = dict(option.strip().split(": ", 1) for option in options)
                answer = st.radio("Your choice", list(texts), index=None, key=key,
                                  format_func=lambda name, texts=texts: f"{texts[name]} ({name})")
            else:
                how = part.how_to_answer(variant).split(", quoted")[0]
                answer = st.text_input(f"Your answer: {how}", key=key)
            submitted = st.form_submit_button("Check", key=f"{key}_check")
        if submitted and answer:
            try:
                verdict = check(exercise, who, {part.key: answer}, book=book)[0]
                said[key] = (verdict.right, verdict.message)
            except BadAnswer as error:
                said[key] = (False, f"Cannot read it: {error}")
        if key in said:
            right, message = said[key]
            (st.success if right else st.warning)(message)
            if right:
                progress.setdefault(lesson.name, set()).add(f"{exercise.id}:{part.key}")


# In a lab shared by a class, tries live with this browser session: nobody's hints are used
# up by someone typing their name, and nothing of the class is written on the server's disk.
book = (st.session_state.setdefault("lesson_attempts", SessionBook()) if in_classroom()
        else AttemptBook())
for position, exercise in enumerate(lesson.exercises):
    if position:
        st.subheader(exercise.title.split(": ", 1)[-1].capitalize())
    if isinstance(exercise, CodingLab):
        coding_lab(exercise)
    else:
        questions(exercise, book)
if in_classroom() and book.last_answers(who):  # pplab exercise submit's file, from here
    st.download_button("Download your answers to hand in", json.dumps(
        submission(book, who), indent=1) + "\n", re.sub(r"[^\w.-]+", "-", who).strip("-.")
        + ".json", "application/json", key="lesson_submission",
        help="The file pplab exercise submit writes: your latest answers in this session. "
             "Hand it in; the instructor grades it with pplab exercise report.")
finish()
