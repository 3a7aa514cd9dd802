"""Schedules as CSV, in the compute-only format of ``torch.distributed.pipelining``.

One row per rank, one action per cell (``0F0,0F1,0B0,...``; an overlapped pair is one cell,
``(0F7;7B3)OVERLAP_F_B``, as PyTorch writes it for DualPipe-V). PyTorch writes idle steps as
empty cells; they are skipped on reading, since bubbles are not part of a schedule. So are
PyTorch's bookkeeping actions (``0REDUCE_GRAD``, ``1UNSHARD``, ``2SEND_F0``...), which its
own schedules emit but which are not compute: communication follows from the dependencies.
The placement of stages on ranks is inferred from which row holds each stage, as PyTorch does.

    pplab validate my_schedule.csv
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from pplab import limits
from pplab.runs.atomic_files import write_text_atomic
from pplab.schedules.actions import AnyAction, Schedule, parse_action

# The non-compute kinds of torch.distributed.pipelining's _action_regex.
_PYTORCH_NON_COMPUTE = re.compile(
    r"^\d+(UNSHARD|RESHARD|REDUCE_GRAD|SEND_F|RECV_F|SEND_B|RECV_B)\d*$")


def schedule_to_csv_text(schedule: Schedule) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for rank in range(schedule.pp_size):
        writer.writerow([str(a) for a in schedule.actions[rank]])
    return buffer.getvalue()


def write_csv(schedule: Schedule, path: str | os.PathLike) -> Path:
    """Write atomically: a reader never sees half a schedule."""
    return write_text_atomic(path, schedule_to_csv_text(schedule))


def schedule_from_csv_text(text: str, name: str = "custom") -> Schedule:
    """Parse compute-only CSV text; raise ValueError naming the row and cell that is wrong.

    Spreadsheet exports are welcome: a UTF-8 byte-order mark and CRLF line ends are read as
    if they were not there. Sizes are bounded by ``pplab.limits`` while reading, before any
    work grows with them.
    """
    limits.check_count("CSV text of", len(text), limits.MAX_CSV_CHARS)
    text = text.removeprefix("\ufeff")
    orders: dict[int, list[AnyAction]] = {}
    stage_to_rank: dict[int, int] = {}
    count = 0
    for rank, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
        limits.check_count("ranks (CSV rows)", rank + 1, limits.MAX_PP_SIZE)
        order = []
        for column, cell in enumerate(row):
            cell = cell.strip()
            if cell in ("", "None") or _PYTORCH_NON_COMPUTE.match(cell):
                continue
            try:
                entry = parse_action(cell)
            except ValueError as error:
                raise ValueError(f"row {rank + 1}, cell {column + 1}: {error}") from None
            for action in entry.sub_actions:
                count += 1
                limits.check_count("actions", count, limits.MAX_ACTIONS)
                if (action.stage >= limits.MAX_STAGES
                        or action.microbatch >= limits.MAX_MICROBATCHES):
                    raise ValueError(f"row {rank + 1}, cell {column + 1}: {cell} is beyond "
                                     f"pplab's limits of {limits.MAX_STAGES:,} stages and "
                                     f"{limits.MAX_MICROBATCHES:,} microbatches (pplab.limits)")
                placed = stage_to_rank.setdefault(action.stage, rank)
                if placed != rank:
                    raise ValueError(
                        f"row {rank + 1}, cell {column + 1}: stage {action.stage} appears on "
                        f"rank {placed} and on rank {rank}; a stage lives on one rank")
            order.append(entry)
        orders[rank] = order
    if not orders or not stage_to_rank:
        raise ValueError("the CSV holds no actions")
    stages = sorted(stage_to_rank)
    if stages != list(range(len(stages))):
        raise ValueError(f"stages must be numbered 0..{len(stages) - 1} without gaps, got {stages}")
    num_microbatches = 1 + max(action.microbatch for order in orders.values()
                               for entry in order for action in entry.sub_actions)
    return Schedule(orders, tuple(stage_to_rank[s] for s in stages), num_microbatches, name=name)


def read_csv(path: str | os.PathLike) -> Schedule:
    path = Path(path)
    try:
        if path.stat().st_size > 4 * limits.MAX_CSV_CHARS:  # UTF-8 takes at most 4 bytes a char
            raise ValueError(f"{path} is over pplab's limit of {limits.MAX_CSV_CHARS:,} "
                             f"characters for a schedule CSV (pplab.limits)")
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return schedule_from_csv_text(text, name=path.stem)
