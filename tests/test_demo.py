"""`pplab demo`: sized to the machine, the classic sequence trained for real, one comparison.

The GPU test runs the engine's CUDA path (NCCL with a GPU per rank, or gloo between ranks
that share one GPU, CUDA events for the timeline) where a GPU is present, and is skipped,
saying so, where none is.

    .venv/bin/python -m pytest -q tests/test_demo.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pplab.cli.demo import comparison_link, demo_configs, demo_size
from pplab.engine.machine import gpu_count


def test_the_demo_sizes_itself_to_the_devices_and_cores_it_finds():
    assert demo_size(gpus=0, cores=2) == ("cpu", 2)
    assert demo_size(gpus=0, cores=1) == ("cpu", 2)  # a pipeline needs two stages
    assert demo_size(gpus=0, cores=64) == ("cpu", 4)
    assert demo_size(gpus=1, cores=2) == ("cuda", 2)  # two ranks share the one GPU
    assert demo_size(gpus=8, cores=2) == ("cuda", 4)
    assert demo_configs(2) == ["gpipe:pp=2,m=4", "1f1b:pp=2,m=4", "zb-h1:pp=2,m=4", "tp:tp=2"]


def _demo(tmp_path, *extra) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "pplab", "demo", "--no-open", "--steps", "3",
                           "--out", str(out), *extra], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, json.loads((out / "comparison.json").read_text())


@pytest.mark.multiprocess  # trains four configurations with real ranks
def test_the_demo_trains_the_sequence_and_saves_one_comparison(tmp_path):
    done, summary = _demo(tmp_path)
    from pplab.engine.machine import cpu_count

    _, ranks = demo_size(gpu_count(), cpu_count())
    assert [row["configuration"] for row in summary["rows"]] == demo_configs(ranks)
    assert all(row["step_time_s"] > 0 for row in summary["rows"])
    assert "100.0 %" in done.stderr and "Traceback" not in done.stderr
    assert f"saved {tmp_path / 'demo'}" in done.stdout
    assert "/compare?comparison=demo" in done.stdout  # the link, and why the lab needs telling
    bad = subprocess.run([sys.executable, "-m", "pplab", "demo", "--no-open", "--steps", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


@pytest.mark.gpu
@pytest.mark.multiprocess
@pytest.mark.skipif(gpu_count() == 0, reason="no CUDA GPU here: the CUDA path is not run")
def test_the_demo_runs_on_the_gpu_it_finds(tmp_path):
    import torch

    assert torch.cuda.is_available(), "nvidia-smi sees a GPU but this torch has no CUDA"
    _, summary = _demo(tmp_path)
    run = tmp_path / "demo" / summary["rows"][0]["run"]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["config"]["device"] == "cuda" and meta["hardware"]["device"] == "cuda"


def test_the_demo_prints_the_link_it_would_open(tmp_path, monkeypatch, capsys):
    from command_helpers import run_pplab

    from pplab.engine import compare

    def trained(configs, shared, out, description, step_progress):
        return Path(out), [{"configuration": c, "step_time_s": 0.1, "bubble_fraction": 0.2}
                           for c in configs]

    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(compare, "run_comparison", trained)
    code, out, _ = run_pplab(capsys, "demo", "--no-open", "--port", "8502")
    name = out.split("/compare?comparison=")[-1].split()[0]
    assert code == 0 and name.startswith("demo-"), out
    assert f"pplab lab --port 8502`, then http://127.0.0.1:8502/compare?comparison={name}\n" in out
    url, note = comparison_link(tmp_path / "elsewhere" / "demo-x", 8501)
    assert url == "http://127.0.0.1:8501/compare?comparison=demo-x"
    assert f"PPLAB_RUNS_DIR={tmp_path / 'elsewhere'}" in note


def test_a_link_opens_a_comparison_on_the_compare_page(tmp_path, monkeypatch):
    from app_helpers import ENTRY
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PPLAB_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(ENTRY, default_timeout=120)
    app.query_params["comparison"] = "pp4-vs-tp4-cpu"
    app.run()
    app.switch_page("views/compare.py").run()
    assert not app.exception, app.exception
    assert app.radio(key="cmp_mode").value != "configurations I choose"
    assert any("One toy GPT" in i.value for i in app.info), "the bundled comparison is open"


def test_the_browser_is_opened_only_where_there_is_a_desktop(monkeypatch):
    from pplab.cli import demo as demo_command

    started = []
    monkeypatch.setattr("subprocess.Popen", lambda argv, **kw: started.append(argv))
    monkeypatch.setattr(demo_command.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    demo_command.open_when_up("http://127.0.0.1:8501/compare?comparison=x")
    assert started == []
    monkeypatch.setenv("DISPLAY", ":0")
    demo_command.open_when_up("http://127.0.0.1:8501/compare?comparison=x")
    assert len(started) == 1 and "webbrowser.open('http://127.0.0.1:8501/compare?comparison=x')" \
        in started[0][-1]
