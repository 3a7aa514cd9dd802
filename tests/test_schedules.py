"""The schedule language: validation, every family, CSV, and parity with PyTorch's schedules."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pplab.formulas import pipeline as formulas
from pplab.schedules import (
    SCHEDULES,
    Action,
    ActionKind,
    OverlapPair,
    Schedule,
    ScheduleError,
    build,
    parse_action,
    read_csv,
    schedule_from_csv_text,
    schedule_to_csv_text,
    validate,
    write_csv,
)
from pplab.sim.simulator import CostModel, simulate
from pplab.timeline import metrics


def _replace(schedule: Schedule, rank: int, actions) -> Schedule:
    orders = dict(schedule.actions)
    orders[rank] = tuple(actions)
    return Schedule(orders, schedule.stage_to_rank, schedule.total_microbatches, schedule.name)


def test_validate_catches_a_missing_action():
    schedule = build("1f1b", 3, 4)
    broken = _replace(schedule, 1, [a for a in schedule.actions[1] if a != Action(1, "B", 2)])
    with pytest.raises(ScheduleError, match="incomplete: the backward of stage 1 microbatch 2"):
        validate(broken)


def test_validate_catches_a_broken_dependency():
    schedule = build("gpipe", 2, 2)
    order = [Action(0, "B", 0), Action(0, "F", 0), Action(0, "F", 1), Action(0, "B", 1)]
    with pytest.raises(ScheduleError, match="dependency broken: 0B0 on rank 0 needs 0F0") as info:
        validate(_replace(schedule, 0, order))
    assert info.value.rank == 0 and info.value.position == 0
    assert "0B0*" in str(info.value)  # the grid marks the broken action


def test_validate_catches_a_deadlock():
    schedule = build("1f1b", 2, 2)
    # Rank 1 insists on microbatch 1 first; rank 0 waits for 1's gradient of microbatch 0.
    order = [Action(1, "F", 1), Action(1, "B", 1), Action(1, "F", 0), Action(1, "B", 0)]
    rank0 = [Action(0, "F", 0), Action(0, "B", 0), Action(0, "F", 1), Action(0, "B", 1)]
    with pytest.raises(ScheduleError, match="deadlock: rank 0 at 0B0 waits for 1I0") as info:
        validate(_replace(_replace(schedule, 1, order), 0, rank0))
    assert "rank 1 at 1F1 waits for 0F1" in str(info.value)


def test_validate_rejects_a_stage_on_the_wrong_rank():
    schedule = build("gpipe", 2, 1)
    orders = {0: [Action(0, "F", 0), Action(1, "F", 0), Action(1, "B", 0), Action(0, "B", 0)],
              1: []}
    with pytest.raises(ScheduleError, match="stage 1 lives on rank 1"):
        validate(Schedule(orders, schedule.stage_to_rank, 1))


@st.composite
def _family_and_numbers(draw):
    name = draw(st.sampled_from(sorted(SCHEDULES)))
    family = SCHEDULES[name]
    p = draw(st.integers(1, 8))
    v = draw(st.integers(family.min_chunks, family.max_chunks or 4))
    if name == "interleaved-1f1b":
        m = p * draw(st.integers(1, 4))
    elif name == "pipedream-2bw":
        m = draw(st.integers(p, 2 * p + 3))
    elif name == "dualpipe-v":
        m = draw(st.integers(2 * p, 2 * p + 8))
    elif name == "interleaved-zb":  # whole rounds of max(1, m // p) microbatches
        m = draw(st.integers(1, 24).filter(lambda m: m % max(1, m // p) == 0))
    else:
        m = draw(st.integers(1, 24))
    return name, p, m, v


@settings(max_examples=50, deadline=None)
@given(_family_and_numbers())
def test_every_family_builds_valid_schedules(case):
    name, p, m, v = case
    schedule = validate(build(name, p, m, v))
    assert schedule.pp_size == p and schedule.num_stages == p * v
    assert schedule.microbatches_per_step == m
    assert schedule_from_csv_text(schedule_to_csv_text(schedule)).actions == schedule.actions


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_csv_file_round_trip(name, tmp_path):
    family = SCHEDULES[name]
    schedule = build(name, 4, 8, family.min_chunks)
    path = write_csv(schedule, tmp_path / f"{name}.csv")
    back = validate(read_csv(path))
    assert back.actions == schedule.actions
    assert back.stage_to_rank == schedule.stage_to_rank
    assert back.name == name
    # Simulating the file gives the built schedule's timeline (async steps aside).
    if not family.asynchronous:
        assert metrics(simulate(back))["makespan"] == metrics(simulate(schedule))["makespan"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.csv"]


def test_action_kinds_survive_csv_as_the_enum_and_still_equal_their_letters():
    schedule = schedule_from_csv_text("0F0,0F1,0B0,0I1,0W1\n")
    back = schedule_from_csv_text(schedule_to_csv_text(schedule))
    assert back.actions == schedule.actions
    kinds = {action.kind for _, action in back.all_actions()}
    assert kinds == set(ActionKind)
    assert all(type(kind) is ActionKind for kind in kinds)
    # a StrEnum: the letter and the member are one key, printed as the letter
    assert ActionKind.FORWARD == "F" and {ActionKind.BACKWARD_WEIGHT: 1}["W"] == 1
    assert str(Action(2, ActionKind.FULL_BACKWARD, 0)) == "2B0"
    assert Action.parse("2F0") == Action(2, "F", 0)


@pytest.mark.parametrize("text, message", [
    ("0F0,0X1\n", "row 1, cell 2: cannot read action '0X1'"),
    ("0F0,1F0\n1B0\n", "stage 1 appears on rank 0 and on rank 1"),
    ("\n", "holds no actions"),
    ("0F0,2F0\n", "without gaps"),
])
def test_bad_csv_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        schedule_from_csv_text(text)


# --- Overlapped pairs: PyTorch's (0F7;7B3)OVERLAP_F_B ----------------------------------------


def test_overlapped_pair_reads_and_prints_as_pytorch_writes_it():
    pair = parse_action(" (0F7;7B3)OVERLAP_F_B ")
    assert pair == OverlapPair(Action(0, "F", 7), Action(7, "B", 3))
    assert str(pair) == "(0F7;7B3)OVERLAP_F_B" and pair.kind == "OVERLAP_F_B"
    assert pair.sub_actions == (Action(0, "F", 7), Action(7, "B", 3))
    assert Action(2, "F", 0).sub_actions == (Action(2, "F", 0),)
    assert parse_action("(1F2;0I1)OVERLAP_F_B").backward == Action(0, "I", 1)


@pytest.mark.parametrize("text, message", [
    ("(7B3;0F7)OVERLAP_F_B", "holds a forward, then a backward"),
    ("(0F1;0W0)OVERLAP_F_B", "holds a forward, then a backward"),
    ("(0F1;1B0)", "is written \\(FORWARD;BACKWARD\\)OVERLAP_F_B"),
    ("(0F1;1B0;2B0)OVERLAP_F_B", "is written"),
    ("(0F1;1X0)OVERLAP_F_B", "cannot read action '1X0'"),
])
def test_a_malformed_pair_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_action(text)
    with pytest.raises(ValueError, match="row 1, cell 2"):
        schedule_from_csv_text(f"0F0,{text}\n")


def test_pairs_round_trip_through_csv_and_count_as_their_halves():
    schedule = build("dualpipe-v", 2, 4)
    text = schedule_to_csv_text(schedule)
    assert "OVERLAP_F_B" in text
    back = validate(schedule_from_csv_text(text))
    assert back.actions == schedule.actions and back.stage_to_rank == schedule.stage_to_rank
    halves = [a for _, a in schedule.all_actions()]
    assert all(isinstance(a, Action) for a in halves)
    assert len(halves) == len(set(halves)) > sum(len(a) for a in schedule.actions.values())
    assert "(0F3;3B1)OVERLAP_F_B (3F2;0B0)OVERLAP_F_B 3B2" in schedule.pretty()


def test_validate_rejects_a_pair_whose_halves_need_each_other():
    # 1B0 needs 1F0: the two cannot run at the same time.
    text = "0F0,0B0\n(1F0;1B0)OVERLAP_F_B\n"
    with pytest.raises(ScheduleError, match="in \\(1F0;1B0\\)OVERLAP_F_B 1B0 needs 1F0") as info:
        validate(schedule_from_csv_text(text))
    assert info.value.rank == 1 and info.value.position == 0


def test_validate_checks_both_halves_of_a_pair():
    # Each half is fine alone, but the pair waits for both inputs: its backward needs 1B0,
    # which rank 1 runs only after 1F1, which needs the forward held inside the pair.
    text = "0F0,(0F1;0B0)OVERLAP_F_B,0B1\n1F0,1F1,1B0,1B1\n"
    with pytest.raises(ScheduleError, match=r"deadlock: rank 0 at \(0F1;0B0\)OVERLAP_F_B "
                                            r"waits for 1I0 \(rank 1\); rank 1 at 1F1 waits"):
        validate(schedule_from_csv_text(text))
    unpaired = "0F0,0F1,0B0,0B1\n1F0,1F1,1B0,1B1\n"
    assert validate(schedule_from_csv_text(unpaired))
    placed = "0F0,(0F1;1B0)OVERLAP_F_B,0B1,0B0\n1F0,1F1,1B1\n"
    with pytest.raises(ValueError, match="stage 1 appears on rank 0 and on rank 1"):
        schedule_from_csv_text(placed)
    pair = OverlapPair(Action(0, "F", 1), Action(0, "W", 0))
    orders = {0: [Action(0, "F", 0), Action(0, "I", 0), pair, Action(0, "B", 1)]}
    with pytest.raises(ScheduleError, match="must pair a forward with a backward"):
        validate(Schedule(orders, (0,), 2))


# --- PyTorch parity ------------------------------------------------------------------------
# torch.distributed.pipelining computes its action orders without a process group: the
# multi-stage schedules in `_calculate_single_rank_operations`, the single-stage ones in the
# loop of `_step_microbatches`, which we run on a stage that records what it is asked to do.


class _RecordingStage:
    """Stands in for a PipelineStage: no tensors, no communication, just the order."""

    def __init__(self, stage_index: int, num_stages: int):
        self.stage_index, self.num_stages = stage_index, num_stages
        self.is_last = stage_index == num_stages - 1
        self.order: list[str] = []

    def forward_one_chunk(self, mb, *args, **kwargs):
        self.order.append(f"{self.stage_index}F{mb}")

    def backward_one_chunk(self, mb, *args, **kwargs):
        self.order.append(f"{self.stage_index}B{mb}")

    def get_fwd_recv_ops(self, mb):
        return []

    get_fwd_send_ops = get_bwd_recv_ops = get_bwd_send_ops = get_fwd_recv_ops

    def perform_reduce_grad(self, *args):
        pass

    def clear_runtime_states(self):
        pass


def _pytorch_single_stage_order(cls, num_stages: int, num_microbatches: int) -> list[list[str]]:
    rows = []
    for stage_index in range(num_stages):
        stage = _RecordingStage(stage_index, num_stages)
        schedule = object.__new__(cls)
        schedule._stage, schedule._num_stages = stage, num_stages
        schedule._n_microbatches, schedule._loss_fn = num_microbatches, None
        schedule._internal_losses, schedule.scale_grads = [], True
        schedule._initialize_stage = lambda *args, **kwargs: None
        schedule._check_inputs = lambda args, kwargs, targets, losses: (args, kwargs)
        cls._step_microbatches(schedule, [()] * num_microbatches, [{}] * num_microbatches)
        rows.append(stage.order)
    return rows


def _pytorch_interleaved_order(num_ranks: int, num_microbatches: int, num_chunks: int):
    from torch.distributed.pipelining.schedules import ScheduleInterleaved1F1B

    schedule = object.__new__(ScheduleInterleaved1F1B)
    schedule.pp_group_size, schedule.n_local_stages = num_ranks, num_chunks
    schedule._n_microbatches = num_microbatches
    schedule.number_of_rounds = max(1, num_microbatches // num_ranks)
    schedule.microbatches_per_round = num_microbatches // schedule.number_of_rounds
    return [schedule._calculate_single_rank_operations(r) for r in range(num_ranks)]


def _pytorch_csv(rows) -> str:
    """PyTorch's own CSV: `_Action` reprs, empty cells for its idle steps (None)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize("p, m", [(2, 2), (4, 4), (4, 8), (3, 7)])
def test_pytorch_gpipe_and_1f1b_orders_simulate_to_the_closed_form(p, m):
    from torch.distributed.pipelining.schedules import Schedule1F1B, ScheduleGPipe

    for cls, name in ((ScheduleGPipe, "gpipe"), (Schedule1F1B, "1f1b")):
        text = _pytorch_csv(_pytorch_single_stage_order(cls, p, m))
        schedule = validate(schedule_from_csv_text(text, name=f"pytorch-{name}"))
        assert schedule.actions == build(name, p, m).actions, name
        for cost in (CostModel(), CostModel(forward=1, backward=3)):
            bubble = metrics(simulate(schedule, cost))["bubble_fraction"]
            assert bubble == pytest.approx(formulas.bubble_fraction(name, p, m)), name


@pytest.mark.parametrize("p, m, v", [(2, 4, 2), (4, 8, 2), (4, 4, 2), (3, 6, 3), (4, 16, 2)])
def test_pytorch_interleaved_order_simulates_to_the_closed_form(p, m, v):
    text = _pytorch_csv(_pytorch_interleaved_order(p, m, v))
    assert ",," in text or p == 1  # PyTorch's idle steps are in the file; we skip them
    schedule = validate(schedule_from_csv_text(text, name="pytorch-interleaved"))
    assert schedule.num_stages == p * v
    bubble = metrics(simulate(schedule))["bubble_fraction"]
    assert bubble == pytest.approx(formulas.bubble_fraction("interleaved-1f1b", p, m, v))
    if m > p:  # with m == p Megatron runs every forward first and PyTorch does not
        assert schedule.actions == build("interleaved-1f1b", p, m, v).actions


def test_pytorch_pipeline_order_ir_with_reduce_grad_loads():
    from torch.distributed.pipelining.schedules import ScheduleGPipe

    schedule = object.__new__(ScheduleGPipe)
    schedule._num_stages, schedule._n_microbatches = 3, 5
    order = ScheduleGPipe._get_pipeline_order(schedule)
    text = _pytorch_csv(order[r] for r in sorted(order))
    assert "REDUCE_GRAD" in text
    assert validate(schedule_from_csv_text(text)).actions == build("gpipe", 3, 5).actions


def test_pytorch_1f1b_ir_last_rank_is_caught():
    # Schedule1F1B._get_pipeline_order numbers the last rank's forwards from 1 (its step()
    # loop is right, as the test above shows); validate names the problem.
    from torch.distributed.pipelining.schedules import Schedule1F1B

    schedule = object.__new__(Schedule1F1B)
    schedule._num_stages, schedule._n_microbatches = 4, 6
    order = Schedule1F1B._get_pipeline_order(schedule)
    ours = schedule_from_csv_text(_pytorch_csv(order[r] for r in sorted(order)))
    if [str(a) for a in ours.actions[3]][:1] == ["3F0"]:
        pytest.skip("this torch numbers the last rank of its 1F1B IR correctly")
    with pytest.raises(ScheduleError, match="incomplete"):
        validate(ours)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_our_csv_loads_into_pytorch(name):
    from torch.distributed.pipelining.schedules import _Action, _validate_schedule

    schedule = build(name, 4, 8, SCHEDULES[name].min_chunks)
    rows = list(csv.reader(io.StringIO(schedule_to_csv_text(schedule))))
    actions = {rank: [_Action.from_str(cell) for cell in row] for rank, row in enumerate(rows)}
    for rank, row in actions.items():
        assert [str(a) for a in row] == [str(a) for a in schedule.actions[rank]]
    mapping = _validate_schedule(actions, schedule.pp_size, schedule.num_stages,
                                 schedule.total_microbatches)
    assert tuple(mapping[s] for s in range(schedule.num_stages)) == schedule.stage_to_rank


# PyTorch 2.13's multi-stage schedules, as its schedule visualizer lists them (compute only).
_PYTORCH_FAMILIES = {
    "ZBVZeroBubble": "zb-v", "LoopedBFS": "looped-bfs", "DualPipeV": "dualpipe-v",
    "InterleavedZeroBubble": "interleaved-zb",
}


def _pytorch_visualizer_csv(schedule_class: str, num_ranks: int, num_microbatches: int,
                            num_chunks: int = 2) -> str:
    from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops

    ops = get_schedule_ops(schedule_class, num_ranks, num_microbatches, num_chunks)
    return _pytorch_csv([["" if action is None else str(action) for action in row]
                         for row in ops])


@pytest.mark.parametrize("schedule_class, p, m, v", [
    ("ZBVZeroBubble", 4, 8, 2), ("ZBVZeroBubble", 3, 4, 2), ("ZBVZeroBubble", 2, 7, 2),
    ("LoopedBFS", 4, 8, 2), ("LoopedBFS", 3, 5, 3),
    ("DualPipeV", 4, 8, 2), ("DualPipeV", 3, 9, 2), ("DualPipeV", 2, 4, 2),
    ("InterleavedZeroBubble", 4, 8, 2), ("InterleavedZeroBubble", 3, 4, 3),
])
def test_pytorch_multi_stage_orders_load_validate_and_are_ours(schedule_class, p, m, v):
    text = _pytorch_visualizer_csv(schedule_class, p, m, v)
    schedule = validate(schedule_from_csv_text(text, name=f"pytorch-{schedule_class}"))
    ours = build(_PYTORCH_FAMILIES[schedule_class], p, m, v)
    assert schedule.actions == ours.actions
    assert schedule.stage_to_rank == ours.stage_to_rank
    events = simulate(schedule, CostModel(overlap=0.5))
    assert set(events["kind"]) <= {"F", "B", "I", "W"}
    assert len(events) == sum(1 for _ in schedule.all_actions())
    if schedule_class == "DualPipeV":
        assert "OVERLAP_F_B" in text
        assert any(isinstance(a, OverlapPair) for a in schedule.actions[0])


@pytest.mark.parametrize("schedule_class, name, p, m, v", [
    ("ZBVZeroBubble", "zb-v", 4, 8, 2), ("ZBVZeroBubble", "zb-v", 3, 5, 2),
    ("LoopedBFS", "looped-bfs", 4, 8, 2), ("LoopedBFS", "looped-bfs", 3, 3, 3),
])
def test_pytorch_orders_simulate_to_the_closed_form(schedule_class, name, p, m, v):
    schedule = schedule_from_csv_text(_pytorch_visualizer_csv(schedule_class, p, m, v))
    cost = CostModel(forward=1, backward=2, backward_input=1, backward_weight=1)
    bubble = metrics(simulate(schedule, cost), ranks=range(p))["bubble_fraction"]
    assert bubble == pytest.approx(formulas.bubble_fraction(name, p, m, v, cost))
