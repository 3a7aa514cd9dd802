"""The simulator against the closed forms, and the rules it promises (no torch here)."""

from __future__ import annotations

import pytest
from lanes import fast_first

from pplab.formulas import pipeline as formulas
from pplab.schedules import (
    SCHEDULES,
    Action,
    Schedule,
    build,
    schedule_from_csv_text,
    weight_versions,
)
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import EVENT_COLUMNS, metrics

# The small grid runs in the fast lane; the full one (every p to 8, every m to 32) is slow.
GRIDS = [pytest.param((range(1, 5), range(1, 9)), id="small"),
         pytest.param((range(1, 9), range(1, 33)), id="full", marks=pytest.mark.slow)]
UNIT = CostModel(forward=1, backward=1, backward_input=1, backward_weight=1)
UNEVEN = CostModel(forward=1.0, backward=2.5, backward_input=1.5, backward_weight=0.75)
FAMILIES = [("gpipe", 1), ("1f1b", 1), ("naive", 1), ("interleaved-1f1b", 2),
            ("interleaved-1f1b", 3), ("zb-h1", 1), ("pipedream", 1), ("pipedream-2bw", 1)]


def _grid(name: str, chunks: int, grid):
    stages, microbatches = grid
    for p in stages:
        for m in microbatches:
            if name == "interleaved-1f1b" and m % p:
                continue
            if name == "pipedream-2bw" and m < p:
                continue
            if name == "zb-h1" and m < p:
                continue
            yield p, m


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("cost", fast_first(1, [UNIT, UNEVEN]), ids=["unit", "uneven"])
@pytest.mark.parametrize(("name", "chunks"), FAMILIES, ids=[f"{n}-v{v}" for n, v in FAMILIES])
def test_bubble_matches_closed_form(name, chunks, cost, grid):
    checked = 0
    steps = {"num_steps": 2} if SCHEDULES[name].asynchronous else {}
    for p, m in _grid(name, chunks, grid):
        events = simulate(build(name, p, m, chunks, **steps), cost)
        expected = formulas.bubble_fraction(name, p, m, chunks, cost, **steps)
        assert metrics(events)["bubble_fraction"] == pytest.approx(expected, abs=1e-9), (p, m)
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("grid", GRIDS)
def test_peak_activations_match_closed_form(grid):
    for name, chunks in FAMILIES:
        for p, m in _grid(name, chunks, grid):
            if m > 12:  # the pattern repeats; keep the test quick
                continue
            events = simulate(build(name, p, m, chunks))
            assert metrics(events)["peak_activations"] == formulas.peak_activations(
                name, p, m, chunks), (name, p, m)


def test_events_follow_schema_and_dependencies():
    schedule = build("zb-h1", 4, 8)
    events = simulate(schedule, UNEVEN)
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert set(events["source"]) == {"simulated"}
    assert set(events["kind"]) == {"F", "I", "W"}  # no idle or wait rows: idle is derived
    ends = {(r.stage, r.kind, r.microbatch): r.end for r in events.itertuples()}
    starts = {(r.stage, r.kind, r.microbatch): r.start for r in events.itertuples()}
    for stage in range(4):
        for mb in range(8):
            assert starts[(stage, "I", mb)] >= ends[(stage, "F", mb)]
            assert starts[(stage, "W", mb)] >= ends[(stage, "I", mb)]
            if stage:
                assert starts[(stage, "F", mb)] >= ends[(stage - 1, "F", mb)]
                assert starts[(stage - 1, "I", mb)] >= ends[(stage, "I", mb)]
    for _, rows in events.groupby("rank"):
        rows = rows.sort_values("start")
        assert (rows["start"].to_numpy()[1:] >= rows["end"].to_numpy()[:-1] - 1e-12).all()


def test_rank_runs_its_own_order():
    schedule = build("1f1b", 3, 5)
    events = simulate(schedule)
    for rank, actions in schedule.actions.items():
        mine = events[events["rank"] == rank].sort_values("start", kind="stable")
        seen = [Action(int(s), str(k), int(m)) for s, k, m in
                zip(mine["stage"], mine["kind"], mine["microbatch"], strict=True)]
        assert seen == list(actions)


def test_communication_costs_latency_plus_bytes_over_bandwidth():
    cost = CostModel(latency=0.5, bandwidth=100.0, message_bytes=50.0)
    events = simulate(build("gpipe", 2, 1), cost)
    sends = events[events["kind"] == "send"]
    assert len(sends) == 2  # one activation forward, one gradient back
    assert (sends["end"] - sends["start"]).tolist() == pytest.approx([1.0, 1.0])
    assert set(sends["bytes"]) == {50}
    assert sorted(zip(sends["rank"], sends["peer"], strict=True)) == [(0, 1), (1, 0)]
    f1 = events[(events["stage"] == 1) & (events["kind"] == "F")].iloc[0]
    assert f1["start"] == pytest.approx(1.0 + 1.0)  # F0 on rank 0, then the message
    assert metrics(events)["makespan"] == pytest.approx(1 + 1 + 1 + 2 + 1 + 2)


def test_zero_comm_emits_no_sends_and_messages_serialise_on_a_link():
    assert "send" not in set(simulate(build("1f1b", 4, 8))["kind"])
    cost = CostModel(forward=0.1, bandwidth=1.0, message_bytes=1.0)
    events = simulate(build("gpipe", 2, 3), cost)
    sends = events[(events["kind"] == "send") & (events["rank"] == 0)].sort_values("start")
    # Three activations produced 0.1 apart share one link that takes 1 per message.
    assert sends["start"].tolist() == pytest.approx([0.1, 1.1, 2.1])


def test_one_slow_link_delays_only_messages_across_it():
    cost = CostModel.parse("f=1,b=2,comm=0.5,links=1:4")
    events = simulate(build("gpipe", 3, 1), cost)
    sends = events[events["kind"] == "send"]
    across = sends.set_index("detail")["end"] - sends.set_index("detail")["start"]
    assert across["activation 0->1"] == pytest.approx(0.5)
    assert across["activation 1->2"] == pytest.approx(2.0)
    assert across["gradient 2->1"] == pytest.approx(2.0)
    assert across["gradient 1->0"] == pytest.approx(0.5)
    # F, F, F, then B, B, B on a chain: 3 + 6 of compute plus 2 x (0.5 + 2) of messages.
    assert metrics(events)["makespan"] == pytest.approx(9 + 5)
    with pytest.raises(ValueError, match="link_scale has 1 factors; 3 stages have 2 links"):
        simulate(build("gpipe", 3, 1), CostModel(link_scale=(1.0,)))


def test_interleaved_chunks_cost_a_fraction_of_a_stage():
    events = simulate(build("interleaved-1f1b", 2, 2, 4), CostModel(forward=1.0, backward=2.0))
    durations = (events["end"] - events["start"]).groupby(events["kind"]).unique()
    assert list(durations["F"]) == pytest.approx([0.25])
    assert list(durations["B"]) == pytest.approx([0.5])


def test_unequal_stages_slow_the_whole_pipe():
    even = metrics(simulate(build("1f1b", 4, 8)))
    slow = metrics(simulate(build("1f1b", 4, 8), CostModel(stage_scale=(1, 2, 1, 1))))
    # The slowest stage sets the pace: 8 microbatches of 3 x 2 on stage 1 at least.
    assert slow["makespan"] >= 8 * 3 * 2
    assert slow["bubble_fraction"] > even["bubble_fraction"]
    with pytest.raises(ValueError, match="stage_scale has 3 factors"):
        simulate(build("1f1b", 4, 8), CostModel(stage_scale=(1, 2, 1)))


def test_the_optimizer_ends_each_ranks_step_and_async_stages_update_once_per_step():
    sync = simulate(build("1f1b", 3, 4), CostModel(optimizer=0.5))
    optim = sync[sync["kind"] == "optim"]
    assert sorted(optim["rank"]) == [0, 1, 2]
    for rank in range(3):
        mine = sync[sync["rank"] == rank]
        assert optim[optim["rank"] == rank]["start"].iloc[0] == mine["end"].max() - 0.5
    schedule = build("pipedream-2bw", 2, 2, num_steps=3)
    events = simulate(schedule, CostModel(optimizer=0.25))
    updates = events[events["kind"] == "optim"]
    assert len(updates) == 2 * 3  # each stage updates once per step of 2 backwards
    assert "optim" not in set(simulate(schedule)["kind"])  # zero cost: nothing to draw


def test_versions_and_steps_come_from_the_schedule():
    schedule = build("pipedream", 3, 2, num_steps=2)
    events = simulate(schedule)
    versions = weight_versions(schedule)
    for row in events.itertuples():
        assert row.step == schedule.step_of(row.microbatch)
        assert row.version == versions[(row.stage, row.microbatch)]
    assert events["version"].max() > 0


def test_deadlock_is_a_clear_error():
    # Rank 1 insists on microbatch 1 first; rank 0 waits for the gradient of microbatch 0.
    orders = {0: [Action(0, "F", 0), Action(0, "B", 0), Action(0, "F", 1), Action(0, "B", 1)],
              1: [Action(1, "F", 1), Action(1, "B", 1), Action(1, "F", 0), Action(1, "B", 0)]}
    with pytest.raises(ValueError, match="rank 0 at 0B0, rank 1 at 1F1 wait forever"):
        simulate(Schedule(orders, (0, 1), 2))


@pytest.mark.parametrize("text, message", [
    ("f=1,b=x", "is not a number"), ("speed=3", "unknown cost key 'speed'"),
    ("f", "is not KEY=NUMBER"), ("f=-1", "forward must be >= 0"),
    ("f=nan", "forward must be a finite number"), ("f=1e300", "over pplab.s limit"),
    ("bytes=1e30", "message_bytes .* over"),
    ("bw=0", "bandwidth must be > 0"), ("scale=1:a", "scale"),
])
def test_cost_parse_rejects_junk(text, message):
    with pytest.raises(ValueError, match=message):
        CostModel.parse(text)


def test_cost_parse_reads_every_key():
    cost = CostModel.parse("f=2, b=3,i=1.5,w=1.5,comm=0.1,bw=10,bytes=5,opt=0.2,scale=1:2")
    assert cost == CostModel(2, 3, 1.5, 1.5, 0.1, 10, 5, 0.2, (1.0, 2.0))
    assert CostModel.parse("lat=0.3").latency == 0.3
    assert CostModel.parse("") == CostModel()
    assert cost.message_time() == pytest.approx(0.1 + 0.5)


def test_every_registered_family_simulates():
    for name, family in SCHEDULES.items():
        events = simulate(build(name, 4, 8, family.min_chunks))
        assert 0 <= metrics(events)["bubble_fraction"] < 1


def _one_pair(overlap: float) -> tuple:
    # One stage, two microbatches: 0F1 runs together with 0B0 (they do not depend on each
    # other), so F = 1 and B = 2 take max + (1 - overlap) * min = 2 + (1 - overlap).
    schedule = schedule_from_csv_text("0F0,(0F1;0B0)OVERLAP_F_B,0B1\n")
    events = simulate(schedule, CostModel(forward=1, backward=2, overlap=overlap))
    return schedule, events


@pytest.mark.parametrize("overlap, pair_time", [(0.0, 3.0), (0.5, 2.5), (1.0, 2.0)])
def test_an_overlapped_pair_takes_less_than_its_halves(overlap, pair_time):
    _, events = _one_pair(overlap)
    assert metrics(events)["makespan"] == pytest.approx(1 + pair_time + 2)
    pair = events[events["detail"].str.startswith("overlapped")].sort_values("start")
    assert list(zip(pair["stage"], pair["kind"], pair["microbatch"], strict=True)) == [
        (0, "F", 1), (0, "B", 0)]
    assert list(pair["detail"]) == ["overlapped with 0B0", "overlapped with 0F1"]
    # The halves share the pair's time in proportion to their own, back to back.
    first, second = pair.iloc[0], pair.iloc[1]
    assert first["start"] == pytest.approx(1.0) and second["end"] == pytest.approx(1 + pair_time)
    assert first["end"] == second["start"]
    assert (first["end"] - first["start"]) * 2 == pytest.approx(second["end"] - second["start"])
    assert metrics(events)["bubble_fraction"] == pytest.approx(0.0)


def test_overlap_shortens_dualpipe_v_and_changes_nothing_else():
    schedule = build("dualpipe-v", 4, 8)
    spans = [metrics(simulate(schedule, CostModel(overlap=x)))["makespan"] for x in (0, 0.5, 1)]
    assert spans[0] > spans[1] > spans[2]
    for name in ("1f1b", "zb-v"):  # no pairs: the knob has nothing to act on
        plain = metrics(simulate(build(name, 4, 8)))["makespan"]
        assert metrics(simulate(build(name, 4, 8), CostModel(overlap=1)))["makespan"] == plain


def test_overlap_is_parsed_checked_and_recorded():
    assert CostModel.parse("ovl=0.25").overlap == 0.25
    assert CostModel.parse("overlap=1").overlap == 1.0
    assert CostModel().to_dict()["overlap"] == 0.0
    with pytest.raises(ValueError, match="between 0 and 1; got 1.5"):
        CostModel.parse("ovl=1.5")
    with pytest.raises(ValueError, match="overlap must be >= 0"):
        CostModel(overlap=-0.1)
