"""pplab train's progress tells the run's loss: a step's loss once every data-parallel replica
has told its own, as their mean in rank order, the number the summary line and meta.json give
(the bar ended at 2.5981 and the summary said 2.5970 for --tp 2 --dp 2: one replica's, then
the mean).

    .venv/bin/python -m pytest -q tests/test_train_progress.py
"""

from __future__ import annotations

from types import SimpleNamespace

from pplab.engine.launch import _progress_relay
from pplab.topology import Topology


def _request(dp: int) -> SimpleNamespace:
    return SimpleNamespace(topology=Topology(pp_size=2, tp_size=2, dp_size=dp), num_steps=3)


def test_a_steps_loss_is_told_once_as_the_mean_the_summary_gives_not_one_replicas():
    told: list[dict] = []
    relay = _progress_relay(_request(dp=2), told.append)
    # the last stage's first tensor-parallel rank of each replica: ranks 4 (dp 0) and 6 (dp 1)
    relay(6, "loss", {"step": 0, "loss": 2.6})
    assert told == [], "one replica's loss is not the step's"
    relay(4, "loss", {"step": 0, "loss": 2.5962})
    summary = sum([2.5962, 2.6]) / 2  # launch._finish: the replicas' mean, in rank order
    assert told == [{"event": "step", "step": 1, "steps": 3, "loss": summary}]
    relay(4, "loss", {"step": 1, "loss": 2.5})
    relay(6, "loss", {"step": 1, "loss": 2.4})
    assert [t["step"] for t in told] == [1, 2] and told[1]["loss"] == sum([2.5, 2.4]) / 2


def test_without_data_parallelism_each_step_is_told_as_it_comes():
    told: list[dict] = []
    relay = _progress_relay(_request(dp=1), told.append)
    relay(2, "started", {})
    relay(2, "loss", {"step": 0, "loss": 2.7})
    assert told == [{"event": "started", "started": 1, "ranks": 4},
                    {"event": "step", "step": 1, "steps": 3, "loss": 2.7}]
