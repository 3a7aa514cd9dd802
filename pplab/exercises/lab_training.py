"""``--train`` of the coding lab: one of the learner's schedules trained for real, and exported.

Once a schedule of the learner's file is on target, the lab writes it as a CSV in
``torch.distributed.pipelining``'s compute-only format (what PyTorch's
``_PipelineScheduleRuntime._load_csv`` reads) and trains pplab's toy GPT with it on real
processes, with ``pplab train --csv``, exactly as a learner would by hand: the run lands in
the runs folder beside the CSV, and the lab's Runs page draws it next to its prediction.
ZB-H1 is preferred, being the one with the most to see (I and W on the engine), then 1F1B,
then GPipe.

    pplab exercise check schedule-lab --file my_schedules.py --train
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pplab.exercises.lab_cases import Case
from pplab.exercises.schedule_lab import TARGETS, LabResult, judge_order, run_lab_file
from pplab.runs.run_dirs import RunError, load_run
from pplab.schedules import Schedule, parse_action, write_csv
from pplab.sim.cost_model import CostModel
from pplab.timeline import metrics

TRAIN_SIZE = (2, 4)  # p, m: two ranks start in seconds on any laptop
TRAIN_STEPS = 3
TRAIN_TIMEOUT_S = 300
PREFERRED = ("zb-h1", "1f1b", "gpipe")


def train_one(path: Path, result: LabResult, out_dir: Path) -> tuple[bool, list[str]]:
    """Export and train the learner's best schedule that is on target; (worked?, lines)."""
    part = next((p for p in PREFERRED if p in result.orders), None)
    if part is None:
        return False, ["--train: no schedule of yours is on target yet; nothing to train"]
    function, label, _ = TARGETS[part]
    p, m = TRAIN_SIZE
    case = Case(p, m, CostModel(), k=p, d=p - 1)  # the family's own limits
    outcome = run_lab_file(path.resolve(), {part: [case.args(part)]})
    given = outcome.answer or {}
    answer = (given.get("results", {}).get(function) or [{}])[0]
    problem = (outcome.refused or outcome.failed or given.get("load_error") or answer.get("error")
               or judge_order(part, case, answer["orders"]))
    if problem:
        return False, [f"--train: your {label} at p = {p}, m = {m}: {problem}"]
    orders = {rank: [parse_action(cell) for cell in row]
              for rank, row in enumerate(answer["orders"])}
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-schedule-lab-{part}-p{p}m{m}"
    csv_path = write_csv(Schedule(orders, tuple(range(p)), m, name=f"your-{part}"),
                         out_dir / f"{name}.csv")
    run_dir = out_dir / name
    command = [sys.executable, "-m", "pplab", "train", "--csv", str(csv_path),
               "--steps", str(TRAIN_STEPS), "--out", str(run_dir)]
    lines = [f"exported your {label} (p = {p}, m = {m}) for PyTorch: {csv_path}",
             "    (compute-only CSV; torch.distributed.pipelining's "
             "_PipelineScheduleRuntime._load_csv reads it)",
             f"training it on the real engine: pplab {' '.join(command[3:])}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, [*lines, f"--train: pplab train took over {TRAIN_TIMEOUT_S} s; stopped"]
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return False, [*lines, f"--train: pplab train failed: {reason}"]
    try:
        run = load_run(run_dir)
    except RunError as error:
        return False, [*lines, f"--train: the run cannot be read: {error}"]
    measured = metrics(run.events, ranks=range(int(run.metadata["world_size"])))
    last_step = (measured.get("per_step") or [measured])[-1]
    losses = [x for x in run.metadata.get("loss") or [] if isinstance(x, int | float)]
    loss = f", loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else ""
    return True, [*lines, f"trained {TRAIN_STEPS} steps: run saved in {run_dir} (last step's "
                          f"bubble {last_step['bubble_fraction']:.2%}, measured{loss}); open "
                          f"it on the lab's Runs page beside its prediction"]
