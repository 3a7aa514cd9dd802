"""Widgets and cached computations the lab's pages share (Streamlit side of the library).

A simulated configuration is read from the same widgets on the Playground and on Compare,
and every simulation goes through ``simulate_cached`` so moving a slider back and forth
costs nothing the second time.

    streamlit run app/lab.py
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pandas as pd
import streamlit as st

from pplab import formulas, runs_catalog, timeline
from pplab.schedules import SCHEDULES, build, schedule_from_csv_text, validate
from pplab.schedules.pipedream import DEFAULT_STEPS
from pplab.simulator import CostModel, simulate

MAX_CSV_CHARS = 1_000_000
NORMALISATION = "idle rank-time / (ranks × makespan) over one training step"


def normalisation(schedule: str) -> str:
    """How the bubble fraction of ``schedule`` is normalised, in words."""
    family = SCHEDULES.get(schedule)
    if family is not None and family.asynchronous:  # no flush, so no step boundary to cut at
        return (f"idle rank-time / (ranks × makespan) over the whole run of {DEFAULT_STEPS} "
                f"steps, since {schedule} never flushes")
    return NORMALISATION


@dataclass(frozen=True)
class SimConfig:
    schedule: str
    pp_size: int
    microbatches: int
    chunks: int
    cost: CostModel
    csv_text: str = ""

    def label(self) -> str:
        if self.csv_text:
            return "uploaded schedule"
        chunks = f" v={self.chunks}" if self.chunks > 1 else ""
        return f"{self.schedule} p={self.pp_size} m={self.microbatches}{chunks}"


def fraction_text(value: float) -> str:
    """27.27 % (3/11): the percentage, and the small fraction it is when there is one."""
    close = Fraction(value).limit_denominator(200)
    exact = abs(float(close) - value) < 1e-9 and close.denominator > 1
    return f"{100 * value:.2f} %" + (f" ({close.numerator}/{close.denominator})" if exact else "")


@st.cache_data(max_entries=64, show_spinner=False)
def simulate_cached(config: SimConfig) -> tuple[pd.DataFrame, dict]:
    """Events and metrics of one simulated configuration; raises ValueError for bad sizes."""
    if config.csv_text:
        # an uploaded order may deadlock or miss work: check it before running it
        schedule = validate(schedule_from_csv_text(config.csv_text, name="uploaded"))
    else:
        schedule = build(config.schedule, config.pp_size, config.microbatches, config.chunks)
    events = simulate(schedule, config.cost)
    return events, timeline.metrics(events)


@st.cache_data(max_entries=64, show_spinner=False)
def schedule_text(config: SimConfig) -> str:
    return build(config.schedule, config.pp_size, config.microbatches, config.chunks).pretty()


def closed_form(config: SimConfig) -> tuple[str, str, float | None, float | None, str]:
    """(LaTeX, source, fraction, ratio to ideal time, why no value) for the config's bubble."""
    form = formulas.CLOSED_FORMS.get(config.schedule)
    latex, source = (form.latex, form.source) if form is not None else ("", "")
    if not latex:
        return latex, source, None, None, ""
    try:
        value = formulas.bubble_fraction(config.schedule, config.pp_size, config.microbatches,
                                         config.chunks, cost=config.cost)
        ratio = formulas.bubble_ratio_to_ideal(config.schedule, config.pp_size,
                                               config.microbatches, config.chunks,
                                               cost=config.cost)
    except (ValueError, ZeroDivisionError) as error:
        return latex, source, None, None, str(error)
    return latex, source, value, ratio, ""


def cost_widgets(key: str) -> CostModel:
    """Per-kind costs and link latency, in cost units (F = 1 means 'one forward')."""
    with st.expander("Costs (cost units)", expanded=False):
        cols = st.columns(3)
        forward = cols[0].number_input("F forward", 0.0, 100.0, 1.0, 0.25, key=f"{key}f")
        backward = cols[1].number_input("B full backward", 0.0, 100.0, 2.0, 0.25, key=f"{key}b")
        optimizer = cols[2].number_input("optimizer step", 0.0, 100.0, 0.0, 0.25, key=f"{key}o")
        cols = st.columns(3)
        back_in = cols[0].number_input("I input grad", 0.0, 100.0, 1.0, 0.25, key=f"{key}i")
        back_w = cols[1].number_input("W weight grad", 0.0, 100.0, 1.0, 0.25, key=f"{key}w")
        latency = cols[2].number_input("link latency", 0.0, 100.0, 0.0, 0.05, key=f"{key}l",
                                       help="time for one activation or gradient message")
    return CostModel(forward=forward, backward=backward, backward_input=back_in,
                     backward_weight=back_w, latency=latency, optimizer=optimizer)


def schedule_widgets(key: str, cost: CostModel, defaults: tuple[str, int, int, int],
                     allow_upload: bool = False) -> SimConfig:
    """Schedule family, p, m and v; with ``allow_upload`` also a schedule CSV (text only)."""
    names = list(SCHEDULES) + (["custom CSV"] if allow_upload else [])
    name, pp_size, microbatches, chunks = defaults
    name = st.selectbox("Schedule", names, index=names.index(name), key=f"{key}schedule",
                        format_func=lambda n: n if n not in SCHEDULES
                        else f"{n}: {SCHEDULES[n].summary}")
    if name == "custom CSV":
        upload = st.file_uploader("Schedule CSV (one row per rank, cells like 0F1)", type=["csv"],
                                  key=f"{key}csv")
        text = upload.getvalue().decode("utf-8", errors="replace") if upload else ""
        if len(text) > MAX_CSV_CHARS:
            st.error(f"the CSV has {len(text):,} characters; the playground takes up to "
                     f"{MAX_CSV_CHARS:,}")
            st.stop()
        if not text:
            st.info("Upload a CSV in torch.distributed.pipelining's compute-only format.")
            st.stop()
        return SimConfig("custom CSV", 0, 0, 1, cost, csv_text=text)
    family = SCHEDULES[name]
    pp_size = st.slider("Pipeline depth p (ranks)", 1, 16, pp_size, key=f"{key}stages")
    microbatches = st.slider("Microbatches m", 1, 64, microbatches, key=f"{key}microbatches")
    if family.max_chunks == 1:
        chunks = 1
    else:
        chunks = st.slider("Chunks v per rank", family.min_chunks, family.max_chunks or 8,
                           max(family.min_chunks, chunks), key=f"{key}chunks")
    return SimConfig(name, pp_size, microbatches, chunks, cost)


def catalog() -> tuple[list[runs_catalog.Entry], list[tuple[str, str]]]:
    """Bundled and user runs, and (path, reason) for folders that are not good runs."""
    return _catalog(str(runs_catalog.user_runs_dir()))


@st.cache_data(ttl=10, show_spinner=False)
def _catalog(user_dir: str) -> tuple[list[runs_catalog.Entry], list[tuple[str, str]]]:
    # user_dir is the cache key: PPLAB_RUNS_DIR may point elsewhere between sessions.
    entries, problems = runs_catalog.find_runs()
    return entries, [(str(path), reason) for path, reason in problems]


def refresh_catalog() -> None:
    _catalog.clear()


def show_problems(problems: list[tuple[str, str]]) -> None:
    for path, reason in problems:
        st.warning(f"Skipped {path}: {reason}")


def run_summary(events: pd.DataFrame, metrics: dict, unit: str) -> dict[str, object]:
    """One row of the metrics table."""
    peaks = metrics.get("peak_activations") or {}
    return {
        "source": "measured" if metrics.get("source") == "measured" else "predicted",
        "makespan": round(float(metrics["makespan"]), 6),
        "time unit": unit,
        "bubble fraction (%)": round(100 * float(metrics["bubble_fraction"]), 2),
        "ranks": int(metrics.get("num_ranks", events["rank"].nunique())),
        "peak activations (microbatches, max over stages)": max(peaks.values(), default=0),
        "events": len(events),
    }


@st.cache_data(max_entries=32, show_spinner=False)
def measured_step(path: str, stamp: float) -> dict:
    """One recorded run reduced to what Compare and Runs draw: its last step and its metadata.

    ``stamp`` (the folder's mtime) is part of the cache key so a re-recorded run is re-read.
    """
    run = timeline.load_run(path)
    steps = sorted(int(s) for s in run.events["step"].unique())
    step = steps[-1]
    events = runs_catalog.one_step(run.events, step)
    meta = run.metadata
    loss = meta.get("loss") if isinstance(meta.get("loss"), list) else []
    memory = meta.get("peak_memory_bytes")
    memory = memory if isinstance(memory, dict) else {}
    return {
        "step": step, "steps": len(steps), "events": events, "metrics": timeline.metrics(events),
        "loss": [float(x) for x in loss if isinstance(x, int | float)],
        "memory": {int(k): float(v) for k, v in memory.items()
                   if str(k).lstrip("-").isdigit() and isinstance(v, int | float)},
        "memory_kind": str(meta.get("peak_memory_kind", "")),
        "memory_per": "stage" if "stage" in str(meta.get("peak_memory_kind", "")) else "rank",
    }


def load_measured(entry: runs_catalog.Entry) -> dict:
    """``measured_step`` of a listed run. The catalog is cached for a few seconds, so a run
    deleted or spoiled since then stops the page with one line instead of a traceback."""
    try:
        return measured_step(str(entry.run.path), entry.run.path.stat().st_mtime)
    except (OSError, ValueError) as error:
        st.error(f"{entry.run.path} can no longer be read: {str(error).splitlines()[0]}")
        st.stop()
