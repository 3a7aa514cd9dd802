"""The lab app: every page visited through Streamlit's AppTest, widgets moved, numbers read.

Recorded runs for Compare and Runs are written by ``save_run`` from simulated timelines put
on a seconds scale, next to a corrupt and a foreign folder that must not hide them.
"""

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lab_server import free_port, start_lab, stop_process_group, wait_until_healthy
from streamlit.testing.v1 import AppTest

from pplab import timeline
from pplab.schedules import build, schedule_to_csv_text
from pplab.simulator import CostModel, schedule_summary, simulate

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "app" / "lab.py")


def write_run(directory: Path, schedule_name="1f1b", stages=2, microbatches=4, steps=3):
    """A run folder shaped like the engine's: seconds, several steps, loss and memory."""
    schedule = build(schedule_name, stages, microbatches)
    frames, offset = [], 0.0
    for step in range(steps):
        events = simulate(schedule, CostModel(forward=0.004 + 0.001 * step, backward=0.008))
        events["start"] += offset
        events["end"] += offset
        events["step"] = step
        offset = float(events["end"].max()) + 0.002
        frames.append(events)
    events = timeline.events_frame(
        row for frame in frames for row in frame.to_dict("records"))
    events["source"] = "measured"
    meta = {
        "schedule": {**schedule_summary(schedule), "csv": schedule_to_csv_text(schedule)},
        "loss": [2.77, 2.4, 2.1][:steps],
        "peak_memory_bytes": {str(s): (s + 3) * 2**20 for s in range(stages)},
        "config": {"device": "cpu"}, "time_unit": "s",
        "tp_size": 1, "dp_size": 1, "pp_size": stages,
    }
    return timeline.save_run(directory, events, meta)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    write_run(root / "run-1f1b")
    write_run(root / "run-gpipe", "gpipe", stages=2, microbatches=2, steps=2)
    broken = root / "broken-run"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    (broken / "events.parquet").write_bytes(b"PAR1 garbage")
    (root / "holiday-photos").mkdir()
    (root / "holiday-photos" / "beach.jpg").write_bytes(b"\xff\xd8")
    (root / "stray.txt").write_text("not a run")
    timeline.save_run(root / "empty-run", timeline.events_frame(), {"loss": []})
    foreign = timeline.load_run(root / "run-gpipe")
    timeline.save_run(root / "zz-foreign-meta", foreign.events,
                      {"schedule": {"name": "gpipe", "pp_size": 10**6,
                                    "num_microbatches": 10**6}, "loss": "many"})
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(root))
    return root


@pytest.fixture
def no_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "empty"))


def open_page(page: str | None = None) -> AppTest:
    app = AppTest.from_file(ENTRY, default_timeout=120).run()
    if page:
        app.switch_page(f"views/{page}.py").run()
    assert not app.exception, app.exception
    return app


def metric(app: AppTest, label_start: str) -> str:
    found = [m.value for m in app.metric if m.label.startswith(label_start)]
    assert found, f"no metric {label_start!r} among {[m.label for m in app.metric]}"
    return found[0]


def chart_specs(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def test_playground_shows_gpipe_bubble_and_follows_the_sliders(no_runs):
    app = open_page()
    assert "3/11" in metric(app, "Bubble fraction (predicted)")
    assert metric(app, "Makespan (predicted)") == "33 cost units"
    assert any("3/11" in m.value and "Huang" in m.value for m in app.markdown)
    gantt = chart_specs(app)[0]
    assert "rank 3" in json.dumps(gantt["layout"]["yaxis"]["ticktext"])
    assert {t["name"] for t in gantt["data"]} >= {"F forward", "B full backward", "idle (bubble)"}

    app.slider(key="pg_microbatches").set_value(12).run()
    assert "1/5" in metric(app, "Bubble fraction (predicted)")
    app.slider(key="pg_stages").set_value(8).run()
    assert "7/19" in metric(app, "Bubble fraction (predicted)")
    assert metric(app, "Ranks") == "8"
    assert metric(app, "Peak activations (predicted)") == "12 microbatches"


def test_playground_interleaved_chunks_costs_and_a_bad_size(no_runs):
    app = open_page()
    app.selectbox(key="pg_schedule").set_value("interleaved-1f1b").run()
    assert "3/19" in metric(app, "Bubble fraction (predicted)")
    app.slider(key="pg_chunks").set_value(4).run()
    assert "3/35" in metric(app, "Bubble fraction (predicted)")
    app.number_input(key="pg_l").set_value(0.5).run()
    assert any("free communication" in m.value for m in app.markdown)
    app.slider(key="pg_microbatches").set_value(6).run()
    assert [e.value for e in app.error] == [
        "interleaved-1f1b walks microbatches in groups of the 4 ranks; "
        "6 microbatches is not a multiple of 4"]
    assert not app.exception


def test_playground_draws_every_registered_schedule(no_runs):
    from pplab.schedules import SCHEDULES

    app = open_page()
    for name in SCHEDULES:
        app.selectbox(key="pg_schedule").set_value(name).run()
        assert not app.exception and not app.error, name
        assert metric(app, "Bubble fraction (predicted)").endswith(("%", ")")), name
        assert chart_specs(app)[0]["layout"]["title"]["text"].startswith(
            f"Predicted timeline: {name}")


def test_playground_says_an_asynchronous_bubble_covers_the_whole_run(no_runs):
    app = open_page()
    assert not any("whole run" in m.value for m in app.markdown)
    app.selectbox(key="pg_schedule").set_value("pipedream").run()
    assert any("whole run of 3 steps" in m.value for m in app.markdown)
    # One fill and drain over 3 steps of 8 microbatches on 4 ranks: 3 / (3 x 8 + 3).
    assert metric(app, "Bubble fraction (predicted)") == "11.11 % (1/9)"
    assert any("gives **11.11 % (1/9)**" in m.value for m in app.markdown)


def test_compare_simulated_configurations(no_runs):
    app = open_page("compare")
    table = app.dataframe[0].value
    assert list(table["bubble fraction (%)"]) == [27.27, 27.27]
    app.slider(key="cmp_count").set_value(4).run()
    table = app.dataframe[0].value
    assert list(table["bubble fraction (%)"])[:3] == [27.27, 27.27, 15.79]
    assert set(table["source"]) == {"predicted"}
    assert len(chart_specs(app)[0]["data"]) >= 4


def test_compare_mixes_a_recorded_run_with_loss_and_memory(runs_dir):
    app = open_page("compare")
    assert any("broken-run" in w.value for w in app.warning)
    app.radio(key="cmp1_source").set_value("recorded run").run()
    app.selectbox(key="cmp1_run").set_value("1f1b p=2 m=4 · cpu · run-1f1b (yours)").run()
    table = app.dataframe[0].value
    assert list(table["source"]) == ["predicted", "measured"]
    # calibrated by default: a cost unit lasts the recorded run's median forward
    assert list(table["time unit"]) == ["s", "s"]
    forward_ms = [n.value for n in app.number_input if n.label.startswith("1 cost unit")][0]
    assert forward_ms == pytest.approx(6.0)  # the last step's forward: 0.004 + 2 x 0.001 s
    assert table["makespan"].iloc[0] == pytest.approx(33 * 0.006)
    titles = [spec["layout"]["title"]["text"] for spec in chart_specs(app)]
    assert "Side by side" in titles
    assert "Loss (measured)" in titles and "Peak memory per rank (measured)" in titles
    app.checkbox(key="cmp_calibrate").uncheck().run()
    table = app.dataframe[0].value
    assert list(table["time unit"]) == ["cost units", "s"]
    titles = [spec["layout"]["title"]["text"] for spec in chart_specs(app)]
    assert any("units differ" in t for t in titles)


def test_compare_calibrates_from_a_run_whose_forwards_take_no_time(tmp_path, monkeypatch):
    run = timeline.load_run(write_run(tmp_path / "source"))
    events = run.events.copy()
    forward = events["kind"] == "F"
    events.loc[forward, "end"] = events.loc[forward, "start"]
    timeline.save_run(tmp_path / "runs" / "instant", events, run.metadata)
    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    app = open_page("compare")
    app.radio(key="cmp1_source").set_value("recorded run").run()
    app.selectbox(key="cmp1_run").set_value("1f1b p=2 m=4 · cpu · instant (yours)").run()
    assert not app.exception, app.exception
    assert [n.value for n in app.number_input if n.label.startswith("1 cost unit")] == [0.001]


def test_compare_opens_a_bundled_comparison(no_runs, tmp_path, monkeypatch):
    from pplab import runs_catalog

    folder = tmp_path / "comparisons" / "gpipe-vs-1f1b"
    write_run(folder / "a-gpipe", "gpipe", stages=2, microbatches=4)
    write_run(folder / "b-1f1b", "1f1b", stages=2, microbatches=4)
    (folder / "comparison.json").write_text(json.dumps({
        "description": "same bubble, less memory",
        "columns": {"configuration": "", "final_loss": "measured"},
        "rows": [{"configuration": "gpipe", "final_loss": 2.1, "extra": 1},
                 {"configuration": "1f1b", "final_loss": 2.1, "extra": 2}]}))
    monkeypatch.setattr(runs_catalog, "bundled_comparisons_dir", lambda: tmp_path / "comparisons")
    app = open_page("compare")
    app.radio(key="cmp_mode").set_value("bundled comparison gpipe-vs-1f1b").run()
    assert app.info[0].value == "same bubble, less memory"
    assert list(app.dataframe[0].value.columns) == ["configuration", "final_loss"]
    table = app.dataframe[1].value
    assert list(table["source"]) == ["measured", "measured"]
    assert table["configuration"].str.contains("gpipe").iloc[0]
    assert table["bubble fraction (%)"].iloc[0] == table["bubble fraction (%)"].iloc[1]


def test_every_bundled_comparison_opens(no_runs):
    from pplab import runs_catalog

    folders = sorted(p.name for p in runs_catalog.bundled_comparisons_dir().glob("*/")
                     if not p.name.startswith("."))  # a comparison being written is hidden
    if not folders:
        pytest.skip("no bundled comparisons in data/comparisons yet")
    app = open_page("compare")
    for name in folders:
        app.radio(key="cmp_mode").set_value(f"bundled comparison {name}").run()
        assert not app.exception and not app.error, name
        assert len(app.get("plotly_chart")) >= 1


def test_runs_page_predicted_over_measured_downloads_and_a_corrupt_folder(runs_dir):
    app = open_page("runs")
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 3
    assert any("broken-run" in w and "not valid JSON" in w for w in warnings)
    assert any("holiday-photos" in w for w in warnings)
    assert any("empty-run" in w and "holds no events" in w for w in warnings)
    options = app.selectbox(key="runs_pick").options
    assert sorted(o for o in options if o.endswith("(yours)")) == [
        "1f1b p=2 m=4 · cpu · run-1f1b (yours)",
        "gpipe p=1000000 m=1000000 · zz-foreign-meta (yours)",
        "gpipe p=2 m=2 · cpu · run-gpipe (yours)"]
    app.selectbox(key="runs_pick").set_value(options[options.index(
        "1f1b p=2 m=4 · cpu · run-1f1b (yours)")]).run()
    # costs calibrated from the run's own medians replay its schedule exactly
    assert metric(app, "Bubble fraction (measured)") == metric(app, "Bubble fraction (predicted)")
    assert metric(app, "Step time (measured)").endswith(" ms")
    gantt = chart_specs(app)[0]
    assert "Predicted over measured" in gantt["layout"]["title"]["text"]
    assert len(app.get("download_button")) == 3

    app.select_slider(key="runs_step").set_value(0).run()
    assert not app.exception
    app.selectbox(key="runs_pick").set_value("gpipe p=2 m=2 · cpu · run-gpipe (yours)").run()
    assert not app.exception and len(app.get("plotly_chart")) >= 2
    app.selectbox(key="runs_pick").set_value(
        "gpipe p=1000000 m=1000000 · zz-foreign-meta (yours)").run()
    assert not app.exception
    assert "too big to replay" in app.error[0].value
    assert metric(app, "Bubble fraction (measured)")


def test_a_run_deleted_after_it_was_listed_is_one_error_line(runs_dir):
    import shutil

    app = open_page("runs")
    # The catalog is cached for a few seconds; the run disappears inside that window.
    shutil.rmtree(runs_dir / "run-gpipe")
    app.selectbox(key="runs_pick").set_value("gpipe p=2 m=2 · cpu · run-gpipe (yours)").run()
    assert not app.exception
    assert [e.value for e in app.error if "can no longer be read" in e.value]


def test_a_saved_simulation_is_not_listed_as_a_measured_run(tmp_path):
    from pplab import runs_catalog

    write_run(tmp_path / "measured")
    schedule = build("1f1b", 2, 2)
    timeline.save_run(tmp_path / "simulated", simulate(schedule), {"schedule": {"name": "1f1b"}})
    entries, problems = runs_catalog.find_runs([("yours", tmp_path)])
    assert [e.run.path.name for e in entries] == ["measured"]
    assert [(p.name, "predicted (simulated)" in why) for p, why in problems] == [
        ("simulated", True)]


def test_a_recorded_schedule_csv_too_big_to_replay_is_refused(tmp_path, monkeypatch):
    from pplab import runs_catalog

    run = timeline.load_run(write_run(tmp_path / "run"))  # 1f1b p=2 m=4: 16 actions
    assert runs_catalog.schedule_of(run).num_microbatches == 4
    monkeypatch.setattr(runs_catalog, "MAX_REPLAY_ACTIONS", 15)
    with pytest.raises(ValueError, match="16 actions is too big to replay"):
        runs_catalog.schedule_of(run)


def test_run_page_bounds_the_request(no_runs):
    app = open_page("run")
    app.number_input(key="run_stages").set_value(64)
    app.button[0].click().run()
    assert app.error[0].value.startswith("Not started: pp 64 x tp 1 x dp 1 = 64 ranks")
    app.number_input(key="run_stages").set_value(2)
    app.number_input(key="run_layers").set_value(1)
    app.button[0].click().run()
    assert app.error[0].value == "Not started: 2 stages need at least 2 layers; the model has 1"


def test_a_training_request_from_elsewhere_is_bounded_too():
    # The page's inputs stop these already; a caller of TrainRequest is held to the same.
    TrainRequest = lab_training().TrainRequest
    good = dict(schedule="1f1b", pp_size=2, microbatches=2, chunks=1, steps=2, layers=2,
                batch_size=4, device="cpu", task="reverse", seed=0, tp=1, dp=1)
    TrainRequest(**good).check(rank_limit=2)
    for change, message in (({"batch_size": 10**6}, "batch size must be 1..512"),
                            ({"steps": 10**6}, "steps must be 1..200"),
                            ({"tp": 0}, "tp and dp must be at least 1")):
        with pytest.raises(ValueError, match=message):
            TrainRequest(**(good | change)).check(rank_limit=2)


def fill_run_form(app: AppTest, batch_size: int) -> None:
    for key, value in (("run_stages", 2), ("run_microbatches", 2), ("run_steps", 2),
                       ("run_layers", 2), ("run_batch", batch_size)):
        app.number_input(key=key).set_value(value)


def test_run_page_shows_the_engines_error_in_one_line(no_runs):
    app = open_page("run")
    fill_run_form(app, batch_size=5)
    app.button[0].click().run(timeout=300)
    assert [e.value for e in app.error] == [
        "The run failed: batch size 5 is not divisible by 2 microbatches"]
    assert not app.exception


def test_run_page_trains_for_real_and_the_run_appears_in_runs(runs_dir):
    app = open_page("run")
    fill_run_form(app, batch_size=4)
    app.button[0].click().run(timeout=300)
    assert not app.error, [e.value for e in app.error]
    saved = app.success[0].value
    assert saved.startswith(f"Done: saved to {runs_dir}") and "1f1b-p2m2" in saved
    run = timeline.load_run(saved.split("saved to ")[1].split(". It is")[0])
    assert len(run.metadata["loss"]) == 2 and set(run.events["source"]) == {"measured"}
    app.switch_page("views/runs.py").run()
    assert any("1f1b-p2m2" in option for option in app.selectbox(key="runs_pick").options)


def lab_training():
    sys.path.insert(0, str(ROOT / "app"))
    try:
        import lab_training
    finally:
        sys.path.remove(str(ROOT / "app"))
    return lab_training


def test_training_is_one_at_a_time_and_stopped_at_its_timeout(tmp_path):
    training = lab_training()
    request = training.TrainRequest("1f1b", 2, 2, 1, 200, 2, 4)
    with training._ONE_RUN:
        with pytest.raises(training.TrainingError, match="another run is in progress"):
            training.train(request, str(tmp_path / "a"), lambda message: None)
    with pytest.raises(training.TrainingError, match="longer than 1 s and was stopped"):
        training.train(request, str(tmp_path / "b"), lambda message: None, timeout=1)
    assert not (tmp_path / "b").exists()
    assert training._ONE_RUN.acquire(blocking=False)
    training._ONE_RUN.release()


def test_lessons_page_checks_the_answer(no_runs):
    app = open_page("lessons")
    assert app.markdown[0].value.startswith("# Lesson 1: the bubble")
    box = app.text_input(key="lesson_answer_01-the-bubble")
    box.input("26").run()
    assert "10.34%" in app.warning[0].value
    app.text_input(key="lesson_answer_01-the-bubble").input("27").run()
    assert app.success[0].value.startswith("right: m = 27")


def test_exercise_check_runs_the_simulator():
    path = ROOT / "lessons" / "01-the-bubble" / "exercise.py"
    spec = importlib.util.spec_from_file_location("exercise", path)
    exercise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exercise)
    assert exercise.check(27)[0] and exercise.check(" 27 ")[0]
    assert not exercise.check(28)[0] and "try fewer" in exercise.check(28)[1]
    assert not exercise.check("ten")[0] and not exercise.check(0)[0]
    assert exercise.simulated_bubble(8) == pytest.approx(3 / 11)


def test_lesson_notebook_runs_top_to_bottom(monkeypatch):
    folder = ROOT / "lessons" / "01-the-bubble"
    notebook = json.loads((folder / "lesson.ipynb").read_text())
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "lesson.ipynb", "exec"), namespace)
    assert namespace["result"]["bubble_fraction"] == pytest.approx(3 / 11)
    assert namespace["figure"].data


def lab(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pplab", "lab", *args],
                          capture_output=True, text=True, timeout=60)


def test_lab_command_refuses_bad_ports_in_one_line():
    done = lab("--port", "70000")
    assert done.returncode == 2
    assert done.stderr == "pplab lab: --port must be between 1 and 65535, got 70000\n"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = lab("--port", str(port))
    assert done.returncode == 2 and "already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_lab_command_says_so_when_the_app_is_not_installed(monkeypatch, capsys):
    from pplab import lab_command

    monkeypatch.setattr(lab_command, "app_entry", lambda: None)
    assert lab_command.main(["--port", "8501"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "app/lab.py is not installed" in err


def test_lab_command_serves_the_app_on_localhost(no_runs, tmp_path):
    port, log = free_port(), tmp_path / "lab.log"
    process = start_lab(port, log)
    try:
        wait_until_healthy(process, port, log)
        first = log.read_text().splitlines()[0]
        assert first == f"pplab lab: open http://127.0.0.1:{port}  (Ctrl-C to stop)"
    finally:
        stop_process_group(process)
    # The command became the server, so stopping it leaves nothing listening.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
