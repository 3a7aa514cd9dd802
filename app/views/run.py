"""Run: train the toy transformer for real, pipelined over this machine's CPUs or GPUs.

A thin face over ``pplab.classroom.training_jobs``: the form makes a request, the library checks and
runs it; this page draws the progress. Stop ends a live run (the rerun it causes stops the
job, which kills its processes and leaves no run directory). In classroom mode the run is the
server's one live run (``pplab.classroom.live_run``): only the instructor starts or stops it, and
every
session's page follows the same run as it happens.

    streamlit run app/lab.py   (then open Run)
"""

import streamlit as st
from classroom_gate import instructor_only, session_key
from run_widgets import refresh_catalog
from shared_work import ServedFigure, shared_cache

from pplab import charts
from pplab.classroom.live_run import LIVE
from pplab.classroom.passcode import in_classroom
from pplab.classroom.training_jobs import (
    TASKS,
    TIMEOUT_S,
    RunPageForm,
    TrainingError,
    max_ranks,
    run_dir_for,
    train,
)
from pplab.engine.machine import cpu_count, gpu_count
from pplab.limits import (
    MAX_LAB_RUN_BATCH_SIZE,
    MAX_LAB_RUN_LAYERS,
    MAX_LAB_RUN_MICROBATCHES,
    MAX_LAB_RUN_STEPS,
)
from pplab.runs import catalog as runs_catalog
from pplab.schedules import SCHEDULES

st.title("Run")
gpus = gpu_count()
devices = ["cpu"] + (["cuda"] if gpus else [])
st.caption(f"One process per rank on torch.distributed (gloo on CPU, NCCL on GPU). This machine: "
           f"{cpu_count()} CPU cores, {gpus} GPUs. One run at a time, at most {MAX_LAB_RUN_STEPS} "
           f"steps, stopped after {TIMEOUT_S // 60} minutes. Runs are saved under "
           f"{runs_catalog.user_runs_dir()}.")

if st.session_state.get("run_stop"):
    st.warning("Stopped: the run was ended and left no run directory.")


@shared_cache
def live_loss_figure(label: str, losses: tuple[float, ...]) -> ServedFigure:
    """The live run's loss so far: one figure for every session that follows it, each second."""
    return ServedFigure.of(charts.loss_curves({label: list(losses)}))


@st.fragment(run_every=1.0)
def follow_live_run() -> None:
    """The classroom's live run as every session sees it, redrawn each second."""
    me, live = session_key(), LIVE.snapshot()
    if live.state == "idle":
        st.info("No run yet: the instructor's run appears here as it happens.")
        return
    st.subheader(f"Live run: {live.label}")
    done = live.step / live.steps if live.steps else 0.0
    st.progress(min(1.0, done), text=live.message)
    if live.losses:
        st.plotly_chart(live_loss_figure(live.label, tuple(live.losses)), key="live_loss")
    if live.state == "done":
        st.success(live.message)
    elif live.state in ("failed", "stopped"):
        st.warning(live.message)
    if live.running and live.owner == me:
        if st.button("Stop the live run", key="live_stop"):
            LIVE.stop(me)


if in_classroom():
    follow_live_run()
if not instructor_only("start or stop training"):
    st.stop()

with st.form("run_form"):
    cols = st.columns(3)
    schedule = cols[0].selectbox("Schedule", list(SCHEDULES), index=list(SCHEDULES).index("1f1b"),
                                 key="run_schedule")
    device = cols[1].selectbox("Device", devices, key="run_device")
    task = cols[2].selectbox("Task", TASKS, key="run_task")
    cols = st.columns(4)
    pp_size = cols[0].number_input("Pipeline depth p (ranks)", 1, 64, 2, key="run_p")
    microbatches = cols[1].number_input("Microbatches m", 1, MAX_LAB_RUN_MICROBATCHES, 4,
                                        key="run_microbatches")
    chunks = cols[2].number_input("Chunks v (interleaved)", 1, 8, 1, key="run_chunks")
    steps = cols[3].number_input("Steps", 1, MAX_LAB_RUN_STEPS, 20, key="run_steps")
    cols = st.columns(4)
    layers = cols[0].number_input("Layers", 1, MAX_LAB_RUN_LAYERS, 4, key="run_layers")
    batch_size = cols[1].number_input("Batch size", 1, MAX_LAB_RUN_BATCH_SIZE, 16,
                                      key="run_batch")
    tp = cols[2].number_input("Tensor parallel tp", 1, 8, 1, key="run_tp")
    dp = cols[3].number_input("Data parallel dp", 1, 8, 1, key="run_dp")
    started = st.form_submit_button("Start training")

if started:
    request = RunPageForm(schedule, int(pp_size), int(microbatches), int(chunks), int(steps),
                           int(layers), int(batch_size), device, task, 0, int(tp), int(dp))
    try:
        checked = request.check(max_ranks(device))
    except ValueError as error:
        st.error(f"Not started: {error}")
        st.stop()
    run_dir = run_dir_for(checked, runs_catalog.user_runs_dir())
    if in_classroom():  # the server's one run, broadcast; this page only follows it
        try:
            LIVE.start(request, str(run_dir),
                       owner=session_key(), label=f"{schedule} p={pp_size} m={microbatches}")
        except ValueError as error:
            st.error(f"Not started: {error}")
        st.stop()
    st.button("Stop", key="run_stop", help="end this run; it leaves no run directory")
    status = st.empty()
    bar = st.progress(0.0, text="starting the ranks…")
    chart = st.empty()
    losses: list[float] = []

    def progress(message: dict) -> None:
        if message["event"] in ("started", "ready"):
            phase = message["event"]
            bar.progress(0.0, text=f"ranks {phase} {message[phase]}/{message['ranks']}")
            return
        done, total = message["step"], message["steps"]
        if message["loss"] is not None:
            losses.append(message["loss"])
        loss = f", loss {losses[-1]:.4f}" if losses else ""
        bar.progress(min(1.0, done / total), text=f"step {done} of {total}{loss} (measured)")
        if len(losses) % max(1, total // 50) == 0 or done == total:
            chart.plotly_chart(charts.loss_curves({"this run": losses}),
                               key=f"run_loss_{len(losses)}")

    try:
        run_dir = train(request, str(run_dir), progress,
                        on_wait=lambda s: status.caption(f"running for {s:.0f} s"))
    except TrainingError as error:
        st.error(f"The run failed: {error}")
        st.stop()
    status.empty()
    refresh_catalog()
    st.session_state["run_last"] = run_dir
    st.session_state["runs_open_path"] = run_dir  # the Runs page opens this run
    st.success(f"Done: saved to {run_dir}. It is listed on the Runs page.")
    st.page_link("views/runs.py", label="Open Runs")
elif st.session_state.get("run_last"):
    st.info(f"Last run saved to {st.session_state['run_last']}.")
    st.page_link("views/runs.py", label="Open Runs")
