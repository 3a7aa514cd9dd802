"""Widgets and cached computations the lab's pages share (the Streamlit side of the library).

A simulated configuration is read from the same widgets on the Playground and on Compare,
and every simulation goes through ``simulation``, shared by every session of the server and
keyed by content (``app/shared_work.py``), so moving a slider back and forth costs nothing
the second time, and the heavy ones run in the server's work pool. Everything that does
not draw a widget or cache a result lives in the package (``pplab.calibration.run_views``,
``pplab.calibration.run_prediction``, ``pplab.timeline.labels``...).

    streamlit run app/lab.py
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from shared_work import ServedFigure, pooled, shared_cache

from pplab import charts
from pplab.calibration.per_rank import peak_activations_per_rank
from pplab.classroom import page_work
from pplab.limits import (
    MAX_PLAYGROUND_ACTIONS,
    MAX_PLAYGROUND_CSV_CHARS,
    MAX_PLAYGROUND_STEPS,
)
from pplab.runs import catalog as runs_catalog
from pplab.schedules import (
    OVERLAP_F_B,
    SCHEDULES,
    ActionKind,
    Schedule,
    schedule_to_csv_text,
)
from pplab.sim.simulator import CostModel

CUSTOM_CSV = "custom CSV"
# Not a registered family: an order searched for the page's costs under a memory cap
# (pplab.sim.search), so it is offered beside the families rather than among them.
SEARCHED = "searched (memory cap C)"
NO_EXAMPLE = "none: upload my own"


@dataclass(frozen=True)
class SimConfig:
    schedule: str
    pp_size: int
    microbatches: int
    chunks: int
    cost: CostModel
    csv_text: str = ""
    csv_name: str = ""  # the uploaded file's or the example's name
    max_in_flight: int = 0  # the memory cap of a searched order; 0 for every other
    steps: int = 1  # training steps of a synchronous schedule, one after the other
    optimizer_sync: str = "barrier"  # how those steps meet at the optimizer: barrier or post

    @property
    def searched(self) -> bool:
        return self.max_in_flight > 0

    def content(self) -> SimConfig:
        """The configuration without its file's name: all that its answers depend on."""
        return replace(self, csv_name="") if self.csv_name else self

    def label(self) -> str:
        if self.csv_text:
            return f"{self.csv_name or 'uploaded'} ({CUSTOM_CSV})"
        if self.searched:
            return f"searched (cap {self.max_in_flight}) p={self.pp_size} m={self.microbatches}"
        chunks = f" v={self.chunks}" if self.chunks > 1 else ""
        steps = f" x{self.steps} steps ({self.optimizer_sync})" if self.steps > 1 else ""
        return f"{self.schedule} p={self.pp_size} m={self.microbatches}{chunks}{steps}"

    def file_name(self) -> str:
        """A name for the shown schedule's CSV download."""
        if self.csv_text:
            return self.csv_name if self.csv_name.endswith(".csv") else f"{self.csv_name}.csv"
        if self.searched:
            return f"searched-cap{self.max_in_flight}-p{self.pp_size}m{self.microbatches}.csv"
        chunks = f"v{self.chunks}" if self.chunks > 1 else ""
        return f"{self.schedule}-p{self.pp_size}m{self.microbatches}{chunks}.csv"


def simulation(config: SimConfig) -> page_work.Simulated:
    """The configuration's schedule, events and metrics, shared by every session; raises
    ValueError for bad sizes or a bad CSV (an uploaded order may deadlock or miss work, so
    it is validated first). A CSV, a search and a big family run in the work pool: they are
    the requests that take seconds."""
    several = (config.steps, config.optimizer_sync)
    # every cell of a CSV is about one action; each step walks them all again
    cells = config.csv_text.count(",") + config.csv_text.count("\n") + 1 if config.csv_text \
        else page_work.family_actions(config.schedule, config.pp_size, config.microbatches,
                                      config.chunks)
    if not config.searched and cells * config.steps > MAX_PLAYGROUND_ACTIONS:
        raise ValueError(f"{config.label()} is about {cells * config.steps:,} actions; the lab's "
                         f"pages draw at most {MAX_PLAYGROUND_ACTIONS:,} (pplab.limits): fewer "
                         f"steps, microbatches or ranks, or pplab simulate on the command line")
    if config.csv_text:  # keyed by the text, never the file's name
        return pooled(page_work.csv_order, config.csv_text, config.cost, *several,
                      what="Checking and simulating your CSV")
    if config.searched:  # the search plays the page's costs: they are part of the answer
        return pooled(page_work.searched_order, config.pp_size, config.microbatches,
                      config.cost, config.max_in_flight,
                      what="Searching an order under the memory cap")
    asked = (config.schedule, config.pp_size, config.microbatches, config.chunks)
    if page_work.family_actions(*asked) * config.steps > page_work.HEAVY_ACTIONS:
        return pooled(page_work.family_order, *asked, config.cost, *several,
                      what=f"Simulating {config.schedule}")
    return _family(*asked, config.cost, *several)


_family = shared_cache(page_work.family_order)


def schedule_for(config: SimConfig) -> Schedule:
    """The configuration's schedule; raises ValueError for bad sizes or a bad CSV."""
    return simulation(config).schedule


def simulate_cached(config: SimConfig) -> tuple[pd.DataFrame, dict]:
    """Events and metrics of one simulated configuration; raises ValueError for bad sizes."""
    found = simulation(config)
    return found.events, found.metrics


def held_per_rank(config: SimConfig) -> dict:
    """The most activations each rank holds at once, in full-rank microbatches
    (``pplab.calibration.per_rank``), once per configuration for every session."""
    simulation(config)
    return _held(config.content())


@shared_cache
def _held(config: SimConfig) -> dict:
    return peak_activations_per_rank(simulation(config).events)


def capped_1f1b_metrics(config: SimConfig) -> dict:
    """Metrics of 1F1B with its warm-up cut to a searched config's cap: the search's baseline."""
    return _capped(config.pp_size, config.microbatches, config.max_in_flight,
                   config.cost).metrics


_capped = shared_cache(page_work.capped_1f1b)


def overlapped_pairs(schedule: Schedule) -> int:
    """How many overlapped forward-backward pairs the schedule runs (DualPipe-V's F;B)."""
    return sum(entry.kind == OVERLAP_F_B for order in schedule.actions.values()
               for entry in order)


def playground_figures(config: SimConfig) -> tuple:
    """The Playground's Gantt, peaks and time-per-rank figures of one configuration, built
    once and shared by every session (never changed after: drawing a figure only reads it). A
    class moving the same sliders asks for the same few configurations, and building the
    figures is most of a rerun's work. Keyed by content: the same order uploaded under
    another name is drawn once, and this session's copy of the Gantt takes the file's name."""
    simulation(config)  # waits on the pool here, where the page can show it
    gantt, peaks, ranks = _figures(config.content())
    if config.csv_name:  # never retitle the shared figure itself: other sessions draw it
        gantt = go.Figure(gantt.to_dict()).update_layout(
            title=f"Predicted timeline: {config.label()}")
    return gantt, peaks, ranks


@shared_cache
def _figures(config: SimConfig) -> tuple:
    found = simulation(config)
    return (ServedFigure.of(charts.gantt(found.events,
                                         title=f"Predicted timeline: {config.label()}")),
            ServedFigure.of(charts.peak_activations(found.metrics["peak_activations"])),
            ServedFigure.of(charts.rank_utilisation(found.metrics["per_rank"],
                                                    charts.COST_UNITS)))


def schedule_text(config: SimConfig) -> tuple[str, str]:
    """The schedule as PyTorch-style text, and as CSV."""
    simulation(config)
    return _texts(config.content())


@shared_cache
def _texts(config: SimConfig) -> tuple[str, str]:
    schedule = simulation(config).schedule
    return schedule.pretty(), schedule_to_csv_text(schedule)


# (key, short label, default, step, help): short labels keep narrow columns readable.
COST_INPUTS = (
    ("f", ActionKind.FORWARD, 1.0, 0.25,
     "forward of one microbatch through one stage; F = 1 is the unit"),
    ("b", ActionKind.FULL_BACKWARD, 2.0, 0.25,
     "full backward (input and weight gradients together)"),
    ("i", ActionKind.BACKWARD_INPUT, 1.0, 0.25,
     "backward for the input gradient only (zero-bubble schedules)"),
    ("w", ActionKind.BACKWARD_WEIGHT, 1.0, 0.25,
     "backward for the weight gradient only (zero-bubble schedules)"),
    ("l", "latency", 0.0, 0.05, "time one activation or gradient message takes between ranks"),
    ("o", "optimizer", 0.0, 0.25, "one optimizer step at the end of a training step"),
    ("v", "validation", 0.0, 0.05,
     "one rank's check of the previous step's optimistic update (post-validation only)"),
)


def cost_widgets(key: str, per_row: int = 3) -> CostModel:
    """Per-kind costs and link latency, in cost units (F = 1 means 'one forward')."""
    values = {}
    with st.expander("Costs (cost units)", expanded=False):
        for first in range(0, len(COST_INPUTS), per_row):
            columns = st.columns(per_row)
            for column, (short, label, default, step, text) in zip(
                    columns, COST_INPUTS[first:first + per_row], strict=False):
                values[short] = column.number_input(label, 0.0, 100.0, default, step,
                                                    key=f"{key}{short}", help=text)
        overlap = st.slider(
            "Overlap of F;B pairs (share hidden)", 0.0, 1.0, 0.0, 0.05, key=f"{key}ovl",
            help="Only schedules with overlapped forward-backward pairs use it: of the "
                 "families, dualpipe-v alone (PyTorch's (0F7;7B3)OVERLAP_F_B). A pair takes "
                 "max(F, B) + (1 - overlap) x min(F, B): 0 charges the sum of its halves, 1 "
                 "only the longer one. Every other schedule ignores it.")
    return CostModel(forward=values["f"], backward=values["b"], backward_input=values["i"],
                     backward_weight=values["w"], latency=values["l"], optimizer=values["o"],
                     validation=values["v"], overlap=overlap)


def schedule_widgets(key: str, cost: CostModel, defaults: tuple[str, int, int, int],
                     allow_upload: bool = False, allow_search: bool = False) -> SimConfig:
    """Schedule family, p, m and v; with ``allow_upload`` also a schedule CSV (uploaded, or one
    of the bundled examples), with ``allow_search`` an order searched under a memory cap. With
    "custom CSV" chosen and no file yet, the returned config has no ``csv_text``: the page
    explains what to do (``explain_custom_csv``)."""
    names = (list(SCHEDULES) + ([SEARCHED] if allow_search else [])
             + ([CUSTOM_CSV] if allow_upload else []))
    name, pp_size, microbatches, chunks, *several = defaults  # several: (steps, sync)
    # the family's description goes under the box, where it wraps (the box cut it mid-word)
    name = st.selectbox("Schedule", names, index=names.index(name), key=f"{key}schedule")
    if name in SCHEDULES:
        st.caption(SCHEDULES[name].summary)
    if name == CUSTOM_CSV:
        return _custom_csv_widgets(key, cost)
    pp_size = st.slider("Pipeline depth p (ranks)", 1, 16, pp_size, key=f"{key}p")
    microbatches = st.slider("Microbatches m", 1, 64, microbatches, key=f"{key}microbatches")
    if name == SEARCHED:
        cap = st.slider(
            "Memory cap C (microbatches held per stage)", 1, 2 * pp_size, pp_size,
            key=f"{key}cap",
            help="The most microbatches whose activations one stage may hold at once. p is "
                 "1F1B's memory; zb-h2 holds 2p - 1. The search (pplab search) keeps the "
                 "fastest order under the cap for the costs above, and never loses to 1F1B "
                 "with its warm-up cut to the same cap.")
        return SimConfig("searched", pp_size, microbatches, 1, cost, max_in_flight=cap)
    family = SCHEDULES[name]
    most = family.max_chunks or 8
    if family.min_chunks == most:  # e.g. V-shaped placements: exactly 2 chunks per rank
        chunks = most
        if most > 1:
            st.caption(f"Chunks v per rank: {most} (fixed by {name}'s placement)")
    else:
        chunks = st.slider("Chunks v per rank", family.min_chunks, most,
                           min(max(family.min_chunks, chunks), most), key=f"{key}chunks")
    if family.asynchronous:  # its own schedule holds its steps, with no optimizer barrier
        return SimConfig(name, pp_size, microbatches, chunks, cost)
    return SimConfig(name, pp_size, microbatches, chunks, cost, **steps_widgets(key, *several))


def steps_widgets(key: str, steps: int = 1, sync: str = "barrier") -> dict:
    """Training steps one after the other, and how they meet at the optimizer step."""
    steps = st.slider("Training steps", 1, MAX_PLAYGROUND_STEPS, steps, key=f"{key}steps",
                      help="Several steps in one walk: the optimizer step between them is "
                           "placed as the choice below says.")
    sync = st.radio(
        "Optimizer step", ("barrier", "post"), ("barrier", "post").index(sync),
        horizontal=True, key=f"{key}optsync",
        disabled=steps == 1,
        help="barrier: global gradient-norm clipping and the NaN/Inf check wait for every "
             "stage, so no rank starts the next step before the slowest ends this one. post: "
             "the zero-bubble paper's post-validation (Qi et al., ICLR 2024, Sec. 4): each "
             "rank steps at once on a partial state and validates during the next step's "
             "warm-up, so steps overlap.")
    return {"steps": steps, "optimizer_sync": sync}


def _custom_csv_widgets(key: str, cost: CostModel) -> SimConfig:
    upload = st.file_uploader("Schedule CSV (one row per rank, cells like 0F1)", type=["csv"],
                              key=f"{key}csv")
    examples = runs_catalog.example_schedules()
    example = st.selectbox("…or an example", [NO_EXAMPLE, *examples], key=f"{key}example",
                           disabled=upload is not None,
                           help="Bundled schedules to start from; see data/schedules/README.md")
    if upload is not None:
        text, name = upload.getvalue().decode("utf-8", errors="replace"), upload.name
    elif example != NO_EXAMPLE:
        text, name = examples[example].read_text(), example
    else:
        text, name = "", ""
    if len(text) > MAX_PLAYGROUND_CSV_CHARS:
        st.error(f"the CSV has {len(text):,} characters; the playground takes up to "
                 f"{MAX_PLAYGROUND_CSV_CHARS:,}")
        st.stop()
    return SimConfig(CUSTOM_CSV, 0, 0, 1, cost, csv_text=text, csv_name=name,
                     **steps_widgets(key))


def explain_custom_csv(key: str) -> None:
    """What to do when "custom CSV" is chosen and no file is given yet."""
    st.info(
        "**No schedule yet.** A schedule CSV has one row per rank and one action per cell, in "
        "the order the rank runs them: `2F0` is stage 2's forward of microbatch 0, `B` a full "
        "backward, `I` and `W` its input- and weight-gradient halves "
        "(torch.distributed.pipelining's compute-only format). Three ways to get one:\n"
        "1. pick an example in the sidebar, or download one below, edit it and upload it;\n"
        "2. choose any schedule in the sidebar and press *Download this schedule (CSV)* under "
        "its chart;\n"
        "3. on the command line: `pplab simulate --schedule 1f1b --pp 4 --microbatches 8 "
        "--save-csv my.csv`.\n\n"
        "Check a file with `pplab validate my.csv`; train it for real with "
        "`pplab train --csv my.csv`.")
    examples = runs_catalog.example_schedules()
    st.caption("The examples (data/schedules), to download:")
    for column, (name, path) in zip(st.columns(max(1, len(examples))), examples.items(),
                                    strict=False):
        column.download_button(name, path.read_text(), name, "text/csv",
                               key=f"{key}example_{name}")
