"""The engine's gradients equal a single-process model's: the pipeline changes when, not what.

Pipelines alone, on two and three ranks; pipelines with tensor and data parallelism are
checked on four ranks in test_parallel_engine.py.

    pytest -q tests/test_engine_parity.py
"""

from __future__ import annotations

import pytest
import torch
from distributed import run_ranks, single_process_reference

from pplab.engine.request import check_request
from pplab.engine.train_config import TrainConfig
from pplab.engine.training import train_rank
from pplab.schedules import weight_versions

pytestmark = pytest.mark.multiprocess

SMALL = {"d_model": 16, "heads": 2, "seq_len": 8, "dtype": "float64", "lr": 1e-2, "steps": 3}

# Unequal splits and microbatch counts that are not multiples of the stage count included.
TWO_RANKS = {
    "gpipe-3-1": TrainConfig(schedule="gpipe", pp_size=2, microbatches=3, layers=4,
                             split=(3, 1), **SMALL),
    "1f1b-m5": TrainConfig(schedule="1f1b", pp_size=2, microbatches=5, layers=3, **SMALL),
    "zb-h1-1-2": TrainConfig(schedule="zb-h1", pp_size=2, microbatches=3, layers=3,
                             split=(1, 2), **SMALL),
    "interleaved-v2": TrainConfig(schedule="interleaved-1f1b", pp_size=2, chunks=2,
                                  microbatches=4, layers=5, split=(2, 1, 1, 1), **SMALL),
    # The families of the zero-bubble, V-shaped, breadth-first and DualPipe papers; the
    # V-shaped ones put the first and the last stage on rank 0, dualpipe-v runs F;B pairs.
    "zb-h2": TrainConfig(schedule="zb-h2", pp_size=2, microbatches=3, layers=3, **SMALL),
    "zb-v": TrainConfig(schedule="zb-v", pp_size=2, microbatches=3, layers=4, **SMALL),
    "dualpipe-v": TrainConfig(schedule="dualpipe-v", pp_size=2, microbatches=4, layers=4,
                              **SMALL),
    "looped-bfs": TrainConfig(schedule="looped-bfs", pp_size=2, chunks=2, microbatches=3,
                              layers=4, **SMALL),
    "interleaved-zb": TrainConfig(schedule="interleaved-zb", pp_size=2, chunks=2,
                                  microbatches=4, layers=5, split=(2, 1, 1, 1), **SMALL),
}


def _from_files(directory) -> dict[str, TrainConfig]:
    """Configurations that read files, written into ``directory`` (the test's tmp_path)."""
    # A schedule a user writes by hand: I/W split, W held back on rank 0 until the end.
    schedule = directory / "mine.csv"
    schedule.write_text("0F0,0F1,0F2,0I0,0I1,0I2,0W0,0W1,0W2\n"
                        "1F0,1I0,1W0,1F1,1I1,1F2,1W1,1I2,1W2\n")
    corpus = directory / "corpus.txt"
    corpus.write_text("a pipeline cuts a model between layers; bubbles come from the order.\n" * 4)
    return {
        "csv-hand-written": TrainConfig(csv=str(schedule), layers=3, **SMALL),
        "text-corpus": TrainConfig(schedule="1f1b", pp_size=2, microbatches=2, layers=2,
                                   task="text", text=str(corpus), **SMALL),
    }


THREE_RANKS = {
    "1f1b-1-2-1": TrainConfig(schedule="1f1b", pp_size=3, microbatches=4, layers=4,
                              split=(1, 2, 1), **SMALL),
    "zb-h1-m5": TrainConfig(schedule="zb-h1", pp_size=3, microbatches=5, layers=3, **SMALL),
    "gpipe-m2": TrainConfig(schedule="gpipe", pp_size=3, microbatches=2, layers=3, **SMALL),
    "interleaved-p3": TrainConfig(schedule="interleaved-1f1b", pp_size=3, chunks=2,
                                  microbatches=3, layers=6, **SMALL),
    "zb-h2-p3": TrainConfig(schedule="zb-h2", pp_size=3, microbatches=5, layers=3, **SMALL),
    "zb-v-p3": TrainConfig(schedule="zb-v", pp_size=3, microbatches=4, layers=6, **SMALL),
    "dualpipe-v-p3": TrainConfig(schedule="dualpipe-v", pp_size=3, microbatches=6, layers=6,
                                 **SMALL),
    "looped-bfs-p3": TrainConfig(schedule="looped-bfs", pp_size=3, chunks=2, microbatches=4,
                                 layers=6, **SMALL),
    "interleaved-zb-p3": TrainConfig(schedule="interleaved-zb", pp_size=3, chunks=2,
                                     microbatches=3, layers=6, **SMALL),
}
ASYNC = {
    "pipedream": TrainConfig(schedule="pipedream", pp_size=3, microbatches=3, layers=3, **SMALL),
    "pipedream-2bw": TrainConfig(schedule="pipedream-2bw", pp_size=3, microbatches=3, layers=3,
                                 **SMALL),
}


def _gradients_and_losses(rank, world_size, report, configs):
    """Runs inside every rank: train each config, keep step 0's gradients by reference name."""
    out = {}
    for name, config in configs.items():
        request = check_request(config)
        grads = {}

        def before_optim(step, runtimes, grads=grads):
            if step == 0:
                for runtime in runtimes.values():
                    names = runtime.module.reference_names()
                    for local, param in runtime.module.named_parameters():
                        grads[names[local]] = param.grad.detach().clone()

        result = train_rank(request, rank, before_optim=before_optim)
        out[name] = {"grads": grads, "losses": result["losses"], "versions": result["versions"],
                     "max_live_versions": result["max_live_versions"]}
    return out


def _check_parity(configs, results):
    for name, config in configs.items():
        expected_losses, expected_grads = single_process_reference(config)
        grads = {}
        for result in results:
            grads.update(result[name]["grads"])
        assert sorted(grads) == sorted(expected_grads), name
        for param, grad in expected_grads.items():
            torch.testing.assert_close(grads[param], grad, msg=lambda m, p=param, n=name:
                                       f"{n}: gradient of {p}: {m}")
        losses = [loss for result in results for loss in result[name]["losses"]]
        assert len(losses) == config.steps, name
        torch.testing.assert_close(losses, expected_losses, msg=lambda m, n=name: f"{n}: {m}")


def test_two_ranks_match_single_process(tmp_path):
    configs = {**TWO_RANKS, **_from_files(tmp_path)}
    _check_parity(configs, run_ranks(2, _gradients_and_losses, configs))


def test_three_ranks_match_single_process_and_async_versions_are_stashed():
    configs = {**THREE_RANKS, **ASYNC}
    results = run_ranks(3, _gradients_and_losses, configs)
    _check_parity(THREE_RANKS, results)
    for name, config in ASYNC.items():
        schedule = check_request(config).schedule
        expected = weight_versions(schedule)
        seen = {}
        for result in results:
            seen.update(result[name]["versions"])
        # Stashing: every microbatch's backward used the version its forward used, and that
        # version is the one the schedule's order implies.
        for (kind, stage, mb), version in seen.items():
            assert version == seen[("F", stage, mb)], (name, kind, stage, mb)
            assert version == expected[(stage, mb)], (name, stage, mb)
        assert len(seen) == 2 * schedule.num_stages * schedule.total_microbatches
        assert len({v for v in seen.values()}) > 1, "an async run must update during the run"
        live = {s: n for result in results for s, n in result[name]["max_live_versions"].items()}
        if name == "pipedream":
            # Stage s of P holds up to P - s versions (PipeDream, Sec. 3.3).
            assert live == {s: 3 - s for s in range(3)}
        else:
            assert max(live.values()) <= 2
        losses = [loss for result in results for loss in result[name]["losses"]]
        assert len(losses) == config.steps
