"""Bounded inputs: every door of the core refuses what is too big with one line, before working.

The property tests feed random CSV text and random sizes to the parser, the validator and the
simulator: each outcome is a schedule or a ValueError, never another exception.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pplab import limits
from pplab.schedules import Schedule, build, schedule_from_csv_text, validate
from pplab.sim.cost_model import CostModel
from pplab.sim.simulator import simulate


@pytest.mark.parametrize("args, message", [
    (("1f1b", 100_000, 8), "pipeline depth 100,000 is over"),
    (("1f1b", 10**20, 8), "pipeline depth 100,000,000,000,000,000,000 is over"),
    (("gpipe", 4, 10_000_000), "microbatches 10,000,000 is over"),
    (("interleaved-1f1b", 512, 1024, 2), "actions; pplab handles at most"),
    (("1f1b", 4.0, 8), "must be a whole number"),
])
def test_builders_refuse_before_building(args, message):
    with pytest.raises(ValueError, match=message):
        build(*args)


def test_async_steps_count_towards_the_limit():
    with pytest.raises(ValueError, match="microbatches 800,000 is over"):
        build("pipedream", 4, 8, num_steps=100_000)


def test_csv_limits_are_checked_while_reading():
    with pytest.raises(ValueError, match=r"ranks \(CSV rows\) 4,097 is over"):
        schedule_from_csv_text("\n".join(f"{r}F0,{r}B0" for r in range(20_000)))
    with pytest.raises(ValueError, match="beyond pplab's limits"):
        schedule_from_csv_text("0F99999999999999999999,0B0")
    with pytest.raises(ValueError, match="CSV text of .* is over"):
        schedule_from_csv_text("0F0," * (limits.MAX_CSV_CHARS // 4 + 1))


def test_bom_and_crlf_are_read_as_plain_csv(tmp_path):
    from pplab.schedules import read_csv

    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf0F0,0B0\r\n1F0,1B0\r\n")
    schedule = validate(read_csv(path))
    assert schedule.pp_size == 2 and [str(a) for a in schedule.actions[0]] == ["0F0", "0B0"]


@pytest.mark.slow
def test_a_deadlock_among_thousands_of_ranks_names_it_in_a_short_message():
    schedule = build("gpipe", 2000, 4)
    actions = dict(schedule.actions)
    actions[1000] = tuple(reversed(actions[1000]))
    with pytest.raises(ValueError) as caught:
        validate(Schedule(actions, schedule.stage_to_rank, 4))
    text = str(caught.value)
    assert text.startswith("dependency broken: 1000B3 on rank 1000 needs 1000F3")
    assert "(showing 3 of 2000 ranks)" in text and len(text.splitlines()) < 15


def test_a_cross_rank_deadlock_is_found_without_quadratic_passes():
    # Rank 0 waits for a gradient that rank 1 only sends after a forward rank 0 has not sent.
    text = "0F0,0B0,0F1,0B1\n1B0,1F0,1F1,1B1\n"
    with pytest.raises(ValueError, match="dependency broken: 1B0 on rank 1 needs 1F0"):
        validate(schedule_from_csv_text(text))
    deadlock = "0B0,0F0\n1F0,1B0\n"
    with pytest.raises(ValueError, match="dependency broken|deadlock"):
        validate(schedule_from_csv_text(deadlock))


_CELLS = st.one_of(
    st.from_regex(r"\A[0-9]{1,3}[FBIW][0-9]{1,3}\Z"),
    st.sampled_from(["", "None", "0SEND_F0", "x", "1F", "\ufeff0F0", " 0B0 "]),
    st.text(max_size=6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_CELLS, max_size=8), max_size=6),
       st.sampled_from(["\n", "\r\n"]))
def test_random_csv_text_is_a_schedule_or_one_value_error(rows, newline):
    text = newline.join(",".join(cell.replace(",", "") for cell in row) for row in rows)
    try:
        schedule = validate(schedule_from_csv_text(text))
    except ValueError as error:
        assert str(error).strip()
        return
    events = simulate(schedule, CostModel(forward=1, backward=2))
    assert len(events) >= sum(len(a) for a in schedule.actions.values())


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["naive", "gpipe", "1f1b", "interleaved-1f1b", "zb-h1", "pipedream",
                        "pipedream-2bw"]),
       st.integers(-2, 10**9), st.integers(-2, 10**9), st.integers(-2, 10**6))
def test_random_sizes_are_a_schedule_or_one_value_error(name, pp, m, v):
    try:
        schedule = build(name, pp, m, v)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert sum(len(a) for a in schedule.actions.values()) <= limits.MAX_ACTIONS


ROOT = Path(__file__).resolve().parents[1]


def _max_constants_outside_limits() -> set[tuple[str, str]]:
    found = set()
    for path in sorted([*ROOT.glob("pplab/**/*.py"), *ROOT.glob("app/**/*.py")]):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "pplab/limits.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            if isinstance(getattr(node, "value", None), ast.Constant) and \
                    isinstance(node.value.value, str):
                continue  # a name such as an environment variable's, not a bound
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and re.match(r"_?MAX_", name.id):
                        found.add((relative, name.id))
    return found


@pytest.mark.slow  # reads every module
def test_no_module_but_limits_defines_a_max_constant():
    found = _max_constants_outside_limits()
    assert found == set(), "move these bounds to pplab/limits.py"

