"""Charts: the Gantt draws what the events say, idle included, and stays small for big tables."""


import numpy as np
import pytest

from pplab import charts, timeline
from pplab.schedules import build
from pplab.sim.simulator import CostModel, simulate


def gpipe_events():
    return simulate(build("gpipe", 4, 8), CostModel(forward=1, backward=2))


def bars(figure, kind_name):
    return [t for t in figure.data if t.name == charts.KIND_NAMES[kind_name]]


def test_gantt_draws_one_bar_per_event_with_hover_fields():
    events = gpipe_events()
    figure = charts.gantt(events)
    forward = bars(figure, "F")[0]
    assert len(forward.x) == (events["kind"] == "F").sum() == 32
    assert sorted(set(forward.y)) == [0, 1, 2, 3]
    for field in ("stage", "microbatch", "start", "duration", "cost units", "predicted"):
        assert field in forward.hovertemplate
    assert figure.layout.yaxis.ticktext[2] == "rank 2 · stage 2"
    assert "cost units" in figure.layout.xaxis.title.text


def test_idle_shading_matches_the_metrics_idle_time():
    events = gpipe_events()
    idle = charts.idle_spans(events)
    per_rank = timeline.metrics(events)["per_rank"]
    for rank, parts in per_rank.items():
        mine = idle[idle["rank"] == rank]
        assert (mine["end"] - mine["start"]).sum() == pytest.approx(parts["idle"])
    # gpipe p=4 m=8: every rank idles (p-1)(F+B) = 9 units of an 11 x 3 = 33 unit step
    assert (idle["end"] - idle["start"]).sum() == pytest.approx(4 * 9)
    figure = charts.gantt(events)
    assert sum(bars(figure, "idle")[0].x) == pytest.approx(36)
    assert "(predicted)" in bars(figure, "idle")[0].hovertemplate


def test_measured_seconds_are_shown_in_ms_and_labelled_measured():
    events = gpipe_events()
    events["start"] *= 1e-3
    events["end"] *= 1e-3
    events["source"] = "measured"
    figure = charts.gantt(events)
    assert figure.layout.xaxis.title.text == "time (ms, measured)"
    forward = bars(figure, "F")[0]
    assert max(forward.base) == pytest.approx(10.0)  # last forward of rank 3 starts at 10 units


def test_communication_is_a_thin_strip_with_peer_and_bytes():
    events = simulate(build("1f1b", 2, 2), CostModel(latency=0.5))
    figure = charts.gantt(events)
    comm = [t for t in figure.data if t.name in (charts.KIND_NAMES["send"],
                                                 charts.KIND_NAMES["recv"])]
    assert comm, "a latency > 0 run has messages to draw"
    for trace in comm:
        assert trace.width == pytest.approx(0.22)
        assert "peer rank" in trace.hovertemplate and "bytes" in trace.hovertemplate


@pytest.mark.slow
def test_twenty_thousand_events_draw_a_bounded_figure():
    events = simulate(build("1f1b", 8, 1250), CostModel())
    assert len(events[events["kind"].isin(["F", "B"])]) == 20_000
    figure = charts.gantt(events)
    assert "aggregated" in figure.layout.title.text
    assert all("(predicted, aggregated)" in t.hovertemplate for t in figure.data)
    kinds = len(charts.ROW_KINDS)
    assert len(figure.data) <= 1 + kinds + kinds * (kinds - 1) // 2  # idle, kinds, pairs
    assert charts.figure_points(figure) <= 8 * charts.AGGREGATE_BINS
    assert charts.figure_points(charts.gantt(events.iloc[:500])) >= 500
    # the steady state alternates F (1 unit) and B (2 units): drawn as both, not as B alone
    mixed = [t for t in figure.data if t.name == "F and B mixed"][0]
    assert sum(mixed.x) > 0.8 * 8 * float(events["end"].max())
    assert "F 33%, B 67%" in list(mixed.customdata[:, 2])


def test_one_replica_of_a_tp_run_is_drawn_on_its_pipeline_positions_not_its_ranks():
    events = simulate(build("1f1b", 2, 4), CostModel(forward=1, backward=2))
    # replica tp=1 of pp 2 x tp 2: global ranks 1 and 3 hold pipeline positions 0 and 1
    events = events.assign(rank=2 * events["rank"] + 1, tp_rank=1)
    for aggregate_above in (10_000, 4):  # exact boxes, then binned rows
        figure = charts.gantt(events, rows="pp_rank", aggregate_above=aggregate_above)
        assert {int(y) for trace in figure.data for y in trace.y} == {0, 1}
        assert list(figure.layout.yaxis.ticktext) == ["pp 0 · stage 0", "pp 1 · stage 1"]
    by_rank = charts.gantt(events)
    assert {int(y) for trace in by_rank.data for y in trace.y} == {1, 3}


def test_aggregation_keeps_each_kinds_time_when_bins_are_finer_than_events():
    events = gpipe_events()  # 33 units; 330 bins put 10 bins in every unit-long event
    spans = charts.aggregate(events, bins=330)
    for kind in ("F", "B"):
        exact = events[events["kind"] == kind]
        drawn = spans[spans["kind"] == kind]
        assert (drawn["end"] - drawn["start"]).sum() == pytest.approx(
            (exact["end"] - exact["start"]).sum())


def test_coverage_agrees_with_brute_force_on_overlapping_spans():
    rng = np.random.default_rng(7)
    starts = rng.uniform(0, 50, 200)
    ends = starts + rng.uniform(0, 5, 200)
    edges = np.linspace(-1, 60, 97)
    brute = [np.clip(t - starts, 0, ends - starts).sum() for t in edges]
    assert charts.coverage(starts, ends, edges) == pytest.approx(brute)


@pytest.mark.slow
def test_stack_shares_the_time_axis_only_when_units_agree():
    a, b = gpipe_events(), simulate(build("1f1b", 4, 8), CostModel())
    shared = charts.gantt_stack([("a", a), ("b", b)])
    assert shared.layout.xaxis.matches == "x2" or shared.layout.xaxis2.matches == "x"
    measured = a.copy()
    measured["source"] = "measured"
    mixed = charts.gantt_stack([("a", a), ("m", measured)])
    assert "units differ" in mixed.layout.title.text
    short, long = measured.copy(), measured.copy()
    short[["start", "end"]] *= 0.1  # a 3.3 s step, drawn in ms on its own
    assert charts.gantt(short).layout.xaxis.title.text == "time (ms, measured)"
    seconds = charts.gantt_stack([("short", short), ("long", long)])
    assert "units differ" not in seconds.layout.title.text
    assert seconds.layout.xaxis2.title.text == "time (s)"
    first_row = [t for t in seconds.data if t.yaxis == "y" and t.base is not None]
    assert max(max(t.base) for t in first_row) < 3.3  # the short step in s, not ms
    with pytest.raises(ValueError, match="got 2 timelines but 1 units"):
        charts.gantt_stack([("a", a), ("b", b)], units=["s"])
    with pytest.raises(ValueError, match="at least one timeline"):
        charts.gantt_stack([])


def test_loss_memory_and_activation_charts_carry_units():
    loss = charts.loss_curves({"run": [2.7, 2.1, 1.5]})
    assert list(loss.data[0].y) == [2.7, 2.1, 1.5] and "nats" in loss.layout.yaxis.title.text
    memory = charts.memory_per_rank({"run": {0: 3 * 2**20, 1: 2**19}})
    assert list(memory.data[0].y) == [3.0, 0.5] and "MiB" in memory.layout.yaxis.title.text
    peaks = charts.peak_activations(timeline.metrics(gpipe_events())["peak_activations"])
    assert list(peaks.data[0].y) == [8, 8, 8, 8] and "predicted" in peaks.layout.title.text


def test_interleaved_chunks_each_have_a_pattern_and_a_legend_entry():
    events = simulate(build("interleaved-1f1b", 2, 4, 2), CostModel())
    figure = charts.gantt(events)
    for kind in ("F", "B"):
        for chunk, shape, look in ((0, "", "plain"), (1, ".", "dotted")):
            name = f"{charts.KIND_NAMES[kind]} · chunk {chunk} ({look})"
            trace = [t for t in figure.data if t.name == name]
            assert trace, name
            # rank r holds stages r and r + 2: chunk 1 is the later stage of each rank
            part = events[(events["kind"] == kind) & ((events["stage"] >= 2) == bool(chunk))]
            assert len(trace[0].x) == len(part), name
            assert (trace[0].marker.pattern.shape or "") == shape, name
    assert figure.layout.yaxis.ticktext[0] == "rank 0 · stage 0,2"
    one_chunk = charts.gantt(gpipe_events())
    assert "chunk" not in " ".join(t.name for t in one_chunk.data)


def test_a_view_has_one_time_unit():
    predicted, measured = gpipe_events(), gpipe_events()
    measured["source"] = "measured"
    assert charts.shared_time_scale([predicted, predicted]) == (1.0, "cost units")
    assert charts.shared_time_scale([predicted, measured]) is None  # calibrate first
    assert charts.shared_time_scale([measured, predicted], ["s", "s"]) == (1.0, "s")  # 33 s
    short = measured.assign(start=measured["start"] * 1e-3, end=measured["end"] * 1e-3)
    assert charts.shared_time_scale([short, short]) == (1e3, "ms")


def test_hover_counts_steps_from_one_and_rows_can_be_named():
    events = simulate(build("1f1b", 2, 2), CostModel())
    figure = charts.gantt(events, row_names={0: "pp 0 (rank 0)", 1: "pp 1 (rank 2)"})
    forward = bars(figure, "F")[0]
    assert {row[4] for row in forward.customdata} == {1}  # the table's step 0 is step 1
    assert "step %{customdata[4]}" in forward.hovertemplate
    assert list(figure.layout.yaxis.ticktext) == ["pp 0 (rank 0) · stage 0",
                                                  "pp 1 (rank 2) · stage 1"]
    assert {row[8] for row in forward.customdata} == {"pp 0 (rank 0)", "pp 1 (rank 2)"}


def test_every_pattern_names_its_background_colour():
    # Streamlit's chart theme paints an unnamed pattern background in the page's colour:
    # white dots on a white page made interleaved chunk 1 vanish from the app's Gantt.
    figures = [charts.gantt(simulate(build("interleaved-1f1b", 2, 4, 2), CostModel())),
               charts.gantt(simulate(build("1f1b", 4, 1250), CostModel()))]  # aggregated
    patterned = [t for f in figures for t in f.data if t.marker.pattern.shape]
    assert {t.name for t in patterned} >= {"idle (bubble)", "F and B mixed",
                                           "F forward · chunk 1 (dotted)"}
    for trace in patterned:
        assert trace.marker.pattern.bgcolor, trace.name


def test_a_stack_names_every_timelines_chunks_alike_so_no_kind_is_listed_twice():
    cost = CostModel(forward=1, backward=2)
    figure = charts.gantt_stack([("1F1B", simulate(build("1f1b", 4, 8), cost)),
                                 ("interleaved", simulate(build("interleaved-1f1b", 4, 8, 2),
                                                          cost))])
    shown = [t.name for t in figure.data if t.showlegend is not False]
    assert "F forward" not in shown and "F forward · chunk 0 (plain)" in shown
    assert len(shown) == len(set(shown)), shown


def test_a_patterned_chunk_is_a_pale_tint_of_its_kinds_colour():
    figure = charts.gantt(simulate(build("zb-v", 4, 8, 2), CostModel()))
    for trace in figure.data:
        if "chunk 1" in (trace.name or ""):
            pattern = trace.marker.pattern
            assert pattern.fgcolor == trace.marker.color, trace.name
            assert pattern.bgcolor == charts.style.tint(trace.marker.color, 0.6), trace.name
    assert charts.style.tint("#4C78A8", 0.5) == "#A6BCD4"


@pytest.mark.parametrize("name,p,v,steps", [("zb-v", 2, 2, 3), ("dualpipe-v", 2, 2, 2),
                                            ("interleaved-1f1b", 2, 3, 2)])
def test_the_legend_is_never_taller_than_its_figure_so_it_never_scrolls(name, p, v, steps):
    from pplab.schedules.steps import repeat_steps

    cost = CostModel(forward=1, backward=2, latency=0.1, optimizer=0.5)
    events = simulate(repeat_steps(build(name, p, 2 * p, v), steps), cost,
                      optimizer_sync="barrier")
    for figure in (charts.gantt(events, title="one<br><sup>two</sup>"),
                   charts.gantt_stack([("a", events), ("b", events)])):
        entries = len({t.legendgroup for t in figure.data if t.showlegend is not False})
        room = figure.layout.height - figure.layout.margin.t - figure.layout.margin.b
        assert entries >= 8 and room >= charts.style.LEGEND_ENTRY_PX * entries, entries
        assert figure.layout.legend.tracegroupgap <= 2
