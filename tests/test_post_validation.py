"""Post-validation trains exactly what the barrier trains, rollbacks included, and overlaps steps.

The zero-bubble paper's Sec. 4 (Qi et al., ICLR 2024, arXiv:2401.10241) steps each stage
optimistically and validates afterwards; these runs hold it to the barrier's losses in
float64 (1e-12), with clipping held back, clipped after a rollback, and skipped after a
non-finite gradient, on two and three ranks, one spawn each.

    pytest -q tests/test_post_validation.py
"""

from __future__ import annotations

import pytest
import torch
from distributed import run_ranks

from pplab.engine.data import make_task
from pplab.engine.model import build_reference_model, lm_loss
from pplab.engine.request import check_request
from pplab.engine.train_config import TrainConfig
from pplab.engine.training import train_rank

pytestmark = pytest.mark.multiprocess

SMALL = {"d_model": 16, "heads": 2, "seq_len": 8, "dtype": "float64", "lr": 1e-2, "steps": 5}
# (label, extra options): each is trained under both syncs and compared.
CASES = {
    "plain": {},  # no clipping: post-validation checks only that the gradient is finite
    "clipped": {"clip_grad": 0.5},  # every step clipped, held back or rolled back on stage 0
    "spike": {"clip_grad": 100.0, "force_rollback_at": "1:spike"},  # stepped, undone, clipped
    "inf": {"force_rollback_at": "2:inf"},  # stepped, undone, skipped
}


def _configs(schedule: str, pp_size: int, microbatches: int) -> dict[tuple[str, str], TrainConfig]:
    return {(label, sync): TrainConfig(schedule=schedule, pp_size=pp_size,
                                       microbatches=microbatches, layers=pp_size,
                                       optimizer_sync=sync, **SMALL, **extra)
            for label, extra in CASES.items() for sync in ("barrier", "post")}


def _train(rank, world_size, report, configs):
    """Runs inside every rank: each config's losses, optimizer verdicts and its timeline."""
    out = {}
    for key, config in configs.items():
        result = train_rank(check_request(config), rank)
        out[key] = {"losses": result["losses"], "sync": result["optimizer_sync"],
                    "rows": [row for row in result["rows"]
                             if row["kind"] in ("F", "allreduce", "optim")]}
    return out


def _reference_clipped(config: TrainConfig) -> list[float]:
    """One process, whole batch, torch's own clip_grad_norm_: what the barrier owes us."""
    request = check_request(config)
    model = build_reference_model(request.model, torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    task = make_task(config.task, config.seq_len, config.text)
    losses = []
    for step in range(config.steps):
        tokens, targets = task.batch(config.seed, step, request.batch_size)
        loss = lm_loss(model(tokens), targets)
        loss.backward()
        losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        optimizer.step()
        optimizer.zero_grad()
    return losses


def _losses(results, key) -> list[float]:
    return [loss for result in results for loss in result[key]["losses"]]


def _sync(results, key, pp_rank) -> dict:
    return results[pp_rank][key]["sync"]


def _check_post_equals_barrier(configs, results, pp_size):
    for label in CASES:
        barrier, post = _losses(results, (label, "barrier")), _losses(results, (label, "post"))
        assert len(post) == SMALL["steps"], label
        torch.testing.assert_close(post, barrier, rtol=0, atol=1e-12,
                                   msg=lambda m, n=label: f"{n}: post != barrier: {m}")
        for rank in range(pp_size):  # every rank reached the barrier's verdict on every step
            barrier_sync = _sync(results, (label, "barrier"), rank)  # None: nothing to agree on
            expected = barrier_sync["verdicts"] if barrier_sync else \
                {str(step): "step" for step in range(SMALL["steps"])}
            assert _sync(results, (label, "post"), rank)["verdicts"] == expected, (label, rank)
    first = _sync(results, ("spike", "post"), 0)
    assert first["verdicts"]["1"] == "clip" and first["rollbacks"] == [1]
    assert first["backup_bytes"] > 0
    inf = _sync(results, ("inf", "post"), 0)
    assert inf["verdicts"]["2"] == "skip" and inf["rollbacks"] == [2]
    clipped = _sync(results, ("clipped", "post"), 0)
    assert set(clipped["verdicts"].values()) == {"clip"}  # rolled back where 0's norm < 0.5
    last = _sync(results, ("spike", "post"), pp_size - 1)
    assert last["rollbacks"] == []  # the last rank holds the whole state: it never guesses
    expected = _reference_clipped(configs[("clipped", "barrier")])
    torch.testing.assert_close(_losses(results, ("clipped", "barrier")), expected,
                               msg=lambda m: f"clipped barrier vs clip_grad_norm_: {m}")


def _rows(results, key):
    return [row for result in results for row in result[key]["rows"]]


def _check_steps_overlap_only_under_post(results):
    post = _rows(results, ("plain", "post"))
    # Rank 0 runs the next step's first forwards before the full state of the last comes back.
    validated = {row["step"]: row["end"] for row in post
                 if row["rank"] == 0 and row["detail"] == "grad norm global"}
    next_forward = {row["step"]: row["start"] for row in post
                    if row["rank"] == 0 and row["kind"] == "F" and row["microbatch"] == 0}
    for step in range(SMALL["steps"] - 1):
        assert next_forward[step + 1] < validated[step], step
    barrier = _rows(results, ("clipped", "barrier"))
    joined = {}
    for row in barrier:
        if row["kind"] == "allreduce":
            joined[row["step"]] = max(joined.get(row["step"], 0.0), row["start"])
    for row in barrier:  # under a barrier nobody computes step t+1 before all joined step t's
        if row["kind"] == "F" and row["step"] > 0:
            assert row["start"] > joined[row["step"] - 1], row


def test_post_validation_on_two_ranks_trains_what_the_barrier_trains():
    configs = _configs("zb-h2", 2, 4)
    results = run_ranks(2, _train, configs)
    _check_post_equals_barrier(configs, results, 2)
    _check_steps_overlap_only_under_post(results)
    redone = [row for row in _rows(results, ("spike", "post"))
              if row["kind"] == "F" and row["detail"] == "redone after a rollback"]
    assert {row["step"] for row in redone} == {2} and {row["rank"] for row in redone} == {0}


def test_post_validation_on_three_ranks_passes_the_state_through_the_middle():
    configs = {**_configs("zb-h2", 3, 5),
               **{(f"1f1b-{label}", sync): config
                  for (label, sync), config in _configs("1f1b", 3, 4).items()}}
    results = run_ranks(3, _train, configs)
    _check_post_equals_barrier({k: v for k, v in configs.items() if k[0] in CASES}, results, 3)
    for label in CASES:
        torch.testing.assert_close(_losses(results, (f"1f1b-{label}", "post")),
                                   _losses(results, (f"1f1b-{label}", "barrier")),
                                   rtol=0, atol=1e-12)
