"""The one walk gives the timelines the four old loops gave, event for event.

``tests/data/walk_golden.json.gz`` was recorded at commit ab13c22, before the walks merged
(``git show ab13c22:tests/data/record_walk_golden.py``): every family's simulated timeline
under six cost models, the shared-core predictions (cores, replicas, lead, spread) and the
searched orders. Each case is rebuilt here with the same builders, costs and random seed and
must give the same rows, times within ``TOLERANCE``.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
from pathlib import Path

import pytest
from lanes import fast_first

from pplab.schedules import build
from pplab.schedules.registry import SCHEDULES
from pplab.sim.cost_model import CostModel
from pplab.sim.search import search_schedule
from pplab.sim.sharing import simulate_shared
from pplab.sim.simulator import simulate

GOLDEN = Path(__file__).parent / "data" / "walk_golden.json.gz"
COLUMNS = ["rank", "stage", "kind", "microbatch", "step", "start", "end", "version", "peer",
           "bytes", "detail"]
TIMES = (5, 6)  # start and end: compared within TOLERANCE, every other column exactly
TOLERANCE = 1e-9
SHARED_COSTS = ("default", "unequal", "overlap_opt", "stage_costs")
SLOTS = ((1, 1), (2, 1), (2, 2), (3.5, 1), (64, 1))
REORDERED: set[str] = set()  # cases whose simultaneous events came in another order


@functools.cache
def golden() -> dict:
    with gzip.open(GOLDEN, "rt") as handle:
        return json.load(handle)


def _rows(events) -> list[list]:
    return [[int(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), float(r[5]), float(r[6]),
             int(r[7]), int(r[8]), int(r[9]), str(r[10])]
            for r in events[COLUMNS].itertuples(index=False)]


def _shapes(name: str):
    family = SCHEDULES[name]
    chunks = family.min_chunks
    yield from ((4, 8, chunks), (3, 6, chunks))
    if family.max_chunks is None:
        yield 2, 4, 3


def _costs(schedule):
    n, p = schedule.num_stages, schedule.pp_size
    yield "default", CostModel()
    yield "fiw", CostModel(forward=1, backward=2, backward_input=1, backward_weight=1)
    yield "unequal", CostModel(forward=1.3, backward=2.1, backward_input=1.2,
                               backward_weight=0.9,
                               stage_scale=tuple(1 + 0.25 * (s % 3) for s in range(n)))
    yield "links", CostModel(latency=0.15, bandwidth=4.0, message_bytes=1.0,
                             link_scale=tuple(1 + (s % 2) * 3 for s in range(n - 1)))
    yield "overlap_opt", CostModel(latency=0.05, overlap=0.5, optimizer=0.7,
                                   stage_scale=tuple(1 + 0.1 * r for r in range(p)))
    yield "stage_costs", CostModel(latency=0.02, stage_costs=tuple(
        (1 + 0.1 * s, 2 + 0.05 * s, 1.1 + 0.02 * s, 0.9 + 0.03 * s) for s in range(n)))


def _cases(name: str):
    """(key, schedule, cost label, cost) for every recorded shape and cost of a family."""
    options = {"num_steps": 2} if SCHEDULES[name].asynchronous else {}
    for p, m, v in _shapes(name):
        try:
            schedule = build(name, p, m, v, **options)
        except ValueError:  # the recording skipped the shapes a family refuses
            continue
        for label, cost in _costs(schedule):
            yield f"{name}|p{p}m{m}v{v}|{label}", schedule, label, cost


def _identity(row: list) -> tuple:
    """Every column but the times: one event's name, unique within a timeline."""
    return tuple(value for column, value in enumerate(row) if column not in TIMES)


def _largest_difference(key: str, got: list[list], want: list[list]) -> float:
    """Assert ``got`` matches ``want`` event for event; return the largest time difference.

    Row for row first. Where events that start at the same instant come in another order
    (the two loops rounded that instant differently in the last bits, so the table's sort by
    start put them the other way round), each event is found by its name instead, and the
    sequence of start times must still be the recorded one: only simultaneous events swap.
    """
    assert len(got) == len(want), f"{key}: {len(got)} events, recorded {len(want)}"
    if [_identity(row) for row in got] == [_identity(row) for row in want]:
        pairs = list(zip(got, want, strict=True))
    else:
        REORDERED.add(key)
        recorded = {_identity(row): row for row in want}
        assert len(recorded) == len(want), f"{key}: two recorded events share a name"
        for index, (row, there) in enumerate(zip(got, want, strict=True)):
            assert _identity(row) in recorded, f"{key}: event {index} {row} was not recorded"
            assert abs(row[5] - there[5]) <= TOLERANCE, \
                f"{key}: event {index} {row} starts where the recording has {there}"
        pairs = [(row, recorded[_identity(row)]) for row in got]
    largest = 0.0
    for row, recorded_row in pairs:
        for column in TIMES:
            difference = abs(row[column] - recorded_row[column])
            assert difference <= TOLERANCE, \
                f"{key}: {COLUMNS[column]} {row[column]!r} of {row}, recorded {recorded_row}"
            largest = max(largest, difference)
    return largest


@pytest.mark.parametrize("name", fast_first(3, list(SCHEDULES)))
def test_simulated_timeline_unchanged_from_the_recording(name):
    recorded = golden()["simulate"]
    checked = 0
    for key, schedule, _, cost in _cases(name):
        _largest_difference(key, _rows(simulate(schedule, cost)), recorded[key])
        checked += 1
    assert checked == sum(1 for key in recorded if key.split("|")[0] == name)


def _shared_cases(name: str):
    for key, schedule, label, cost in _cases(name):
        if label not in SHARED_COSTS:
            continue
        for slots, replicas in SLOTS:
            yield f"{key}|slots{slots}r{replicas}", simulate_shared, (
                schedule, cost, slots, replicas), {}
        lead = [{"F": 0.1, "B": 0.2, "I": 0.1, "W": 0.05} for _ in range(schedule.num_stages)]
        yield f"{key}|slots2r1|lead", simulate_shared, (schedule, cost, 2, 1), {"lead": lead}
        draws = random.Random(7)
        yield f"{key}|slots2r1|lead|spread", simulate_shared, (schedule, cost, 2, 1), {
            "lead": lead, "spread": lambda draws=draws: draws.uniform(0.9, 1.1)}


# Shared cores on one family run in the fast lane (asynchronous updates); the other eleven
# (overlapped pairs with V placement among them), five times the work, are slow.
FAST_SHARED = ("pipedream",)


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=() if name in FAST_SHARED else pytest.mark.slow)
    for name in SCHEDULES])
def test_shared_core_prediction_unchanged_from_the_recording(name):
    recorded = golden()["shared"]
    checked = 0
    for key, run, args, options in _shared_cases(name):
        _largest_difference(key, _rows(run(*args, **options)), recorded[key])
        checked += 1
    assert checked == sum(1 for key in recorded if key.split("|")[0] == name)


@pytest.mark.slow  # searches each recorded cap
def test_searched_orders_unchanged_from_the_recording():
    recorded = golden()["search"]
    for p, m, cap in ((4, 8, 4), (4, 8, 2), (3, 6, 5), (5, 10, 3)):
        for label, cost in (
                ("default", CostModel()),
                ("fiw", CostModel(forward=1, backward=2, backward_input=1, backward_weight=1,
                                  latency=0.1)),
                ("unequal", CostModel(forward=1, backward=2.4, backward_input=1.5,
                                      backward_weight=0.9,
                                      stage_scale=tuple(1 + 0.3 * (r % 2) for r in range(p))))):
            found = search_schedule(p, m, cost, max_in_flight=cap)
            want = recorded[f"p{p}m{m}cap{cap}|{label}"]
            assert found.pretty() == want["pretty"], f"p{p}m{m}cap{cap}|{label}"
            assert {k: str(v) for k, v in found.params.items()} == want["params"]
