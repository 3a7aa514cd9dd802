"""The schedule language: actions, schedules, the registry of families, validation, CSV.

``pplab.sim.search`` (the memory-bounded search) is imported on its own: it simulates,
so it needs the cost model and the simulator, which themselves import this package.
"""

# isort: off
# Imported for their @register side effect, in the order `pplab schedules` lists them.
from pplab.schedules import simple, interleaved, zero_bubble, pipedream  # noqa: F401
from pplab.schedules import looped_bfs, interleaved_zero_bubble, zero_bubble_v, dualpipe  # noqa: F401
# isort: on
from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    FULL_BACKWARD,
    OVERLAP_F_B,
    Action,
    ActionKind,
    AnyAction,
    Message,
    OverlapPair,
    Schedule,
    finishes,
    message_into,
    message_of,
    needs,
    parse_action,
    weight_versions,
)
from pplab.schedules.csv_io import read_csv, schedule_from_csv_text, schedule_to_csv_text, write_csv
from pplab.schedules.registry import SCHEDULES, build, depth_from_flags
from pplab.schedules.validate import ScheduleError, step_grid, validate

__all__ = [
    "Action", "ActionKind", "OverlapPair", "AnyAction", "Schedule", "SCHEDULES", "ScheduleError",
    "build", "depth_from_flags", "validate", "step_grid", "parse_action",
    "read_csv", "write_csv", "schedule_from_csv_text", "schedule_to_csv_text",
    "needs", "finishes", "weight_versions", "Message", "message_of", "message_into",
    "FORWARD", "FULL_BACKWARD", "BACKWARD_INPUT", "BACKWARD_WEIGHT", "COMPUTE_KINDS",
    "OVERLAP_F_B",
]
