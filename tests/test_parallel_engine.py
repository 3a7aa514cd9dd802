"""The engine with tensor and data parallelism, pipelined or not, against one process.

Each configuration trains three steps with Adam through ``train_rank`` (the code path of
``pplab train --tp/--dp``); step 0's gradients, cut to each rank's shard, and every step's
loss must equal a single-process model of the same seed on the whole batch. The recorded
bytes of every step must equal the closed forms exactly: pipeline sends, the Megatron f/g
all-reduces and the data-parallel gradient all-reduce.

    pytest -q tests/test_parallel_engine.py
"""

from __future__ import annotations

import pytest
import torch
from distributed import run_ranks, single_process_reference

from pplab.engine.compare import formula_bytes
from pplab.engine.request import check_request
from pplab.engine.train_config import TrainConfig
from pplab.engine.training import train_rank
from pplab.formulas import parallel as formulas

SMALL = {"d_model": 16, "heads": 2, "seq_len": 8, "dtype": "float64", "lr": 1e-2, "steps": 3}

TWO_RANKS = {
    "tp2": TrainConfig(schedule="1f1b", pp_size=1, microbatches=2, layers=2, tp_size=2, **SMALL),
    "dp2": TrainConfig(schedule="gpipe", pp_size=1, microbatches=2, layers=2, dp_size=2, **SMALL),
}
FOUR_RANKS = {
    "pp2-tp2": TrainConfig(schedule="1f1b", pp_size=2, microbatches=3, layers=3, tp_size=2,
                           **SMALL),
    "pp2-dp2": TrainConfig(schedule="gpipe", pp_size=2, microbatches=2, layers=3, dp_size=2,
                           **SMALL),
    "tp2-dp2": TrainConfig(schedule="1f1b", pp_size=1, microbatches=2, layers=2, tp_size=2,
                           dp_size=2, **SMALL),
    "interleaved-pp2-tp2": TrainConfig(schedule="interleaved-1f1b", pp_size=2, chunks=2,
                                       microbatches=2, layers=4, tp_size=2, **SMALL),
    # W reruns the graph through every f operator of its stage (and stage 0's I none).
    "zb-pp2-tp2": TrainConfig(schedule="zb-h1", pp_size=2, microbatches=3, layers=2, tp_size=2,
                              **SMALL),
}


def _shard_rule(module, local_name: str):
    """How this rank's tensor is cut from the full one: (kind, index) or None when whole."""
    owner = module.get_submodule(local_name.rsplit(".", 1)[0])
    index = getattr(owner, "index", None)
    if not isinstance(index, torch.Tensor):
        return None
    is_row_bias = type(owner).__name__ == "RowParallelLinear" and local_name.endswith("bias")
    return None if is_row_bias else (type(owner).__name__, index.clone())


def _train(rank, world_size, report, configs):
    out = {}
    for name, config in configs.items():
        request = check_request(config)
        grads = []

        def before_optim(step, runtimes, grads=grads):
            if step == 0:
                for runtime in runtimes.values():
                    names = runtime.module.reference_names()
                    for local, param in runtime.module.named_parameters():
                        grads.append((names[local], _shard_rule(runtime.module, local),
                                      param.grad.detach().clone()))

        result = train_rank(request, rank, before_optim=before_optim)
        out[name] = {"grads": grads, "losses": result["losses"], "rows": result["rows"]}
    return out


def _cut(full: torch.Tensor, rule) -> torch.Tensor:
    if rule is None:
        return full
    kind, index = rule
    return full[index] if kind == "ColumnParallelLinear" else full[:, index]


def _expected_bytes(config) -> dict[str, int]:
    request = check_request(config)
    model, b = request.model, request.microbatch_size
    m = request.schedule.microbatches_per_step
    t, r = config.tp_size, config.dp_size
    # A split backward crosses a stage's f operators in I (not on stage 0) and again in W.
    passes = [1 if config.schedule != "zb-h1" else 1 + (stage > 0)
              for stage in range(len(request.layer_split))]
    expected = {
        "send": formulas.pipeline_send_bytes(request.schedule.num_stages, m, b, model.seq_len,
                                             model.d_model, t, r, 8),
        "tp": sum(formulas.tp_allreduce_bytes(layers, m, b, model.seq_len, model.d_model, t, r,
                                              8, passes[stage])
                  for stage, layers in enumerate(request.layer_split)),
        "dp": formulas.dp_allreduce_bytes(request.layer_split, model.d_model, model.d_ff,
                                          model.vocab_size, model.seq_len, t, r, 8),
    }
    assert formula_bytes(request) == expected  # what pplab compare prints beside the measurement
    return expected


def _measured_bytes(rows, step: int) -> dict[str, int]:
    mine = [row for row in rows if row["step"] == step]
    return {
        "send": sum(row["bytes"] for row in mine if row["kind"] == "send"),
        "tp": sum(row["bytes"] for row in mine
                  if row["kind"] == "allreduce" and row["detail"].startswith("tp")),
        "dp": sum(row["bytes"] for row in mine
                  if row["kind"] == "allreduce" and row["detail"] == "dp grads"),
    }


def _check(configs, results):
    for name, config in configs.items():
        expected_losses, expected_grads = single_process_reference(config)
        seen = set()
        for rank, result in enumerate(results):
            for ref_name, rule, grad in result[name]["grads"]:
                seen.add(ref_name)
                torch.testing.assert_close(
                    grad, _cut(expected_grads[ref_name], rule),
                    msg=lambda m, p=ref_name, r=rank, n=name: f"{n} rank {r}: {p}: {m}")
        assert seen == set(expected_grads), f"{name}: missing {set(expected_grads) - seen}"
        reports = [result[name]["losses"] for result in results if result[name]["losses"]]
        assert len(reports) == config.dp_size, name
        losses = [sum(values) / len(values) for values in zip(*reports, strict=True)]
        torch.testing.assert_close(losses, expected_losses, msg=lambda m, n=name: f"{n}: {m}")
        topology = check_request(config).topology
        for rank, result in enumerate(results):  # every row names its rank's coordinates
            coords = topology.coords(rank)
            assert {(row["pp_rank"], row["tp_rank"], row["dp_rank"])
                    for row in result[name]["rows"]} == {(coords.pp, coords.tp, coords.dp)}
        rows = [row for result in results for row in result[name]["rows"]]
        for step in range(config.steps):
            assert _measured_bytes(rows, step) == _expected_bytes(config), (name, step)


@pytest.mark.multiprocess
def test_tp2_and_dp2_match_single_process():
    _check(TWO_RANKS, run_ranks(2, _train, TWO_RANKS))


@pytest.mark.multiprocess
def test_pipelines_with_tp_and_dp_on_four_ranks_match_single_process():
    _check(FOUR_RANKS, run_ranks(4, _train, FOUR_RANKS))


def test_grid_shapes_are_refused_with_their_numbers():
    with pytest.raises(ValueError, match="4 heads cannot be split across tp 3"):
        TrainConfig(heads=4, tp_size=3)
    with pytest.raises(ValueError, match="dp_size must be at least 1, got 0"):
        TrainConfig(dp_size=0)
    with pytest.raises(ValueError, match="batch size 6 is not divisible by 4 microbatches"):
        check_request(TrainConfig(pp_size=2, microbatches=4, batch_size=6, dp_size=2))


@pytest.mark.parametrize("args,message", [
    (["--tp", "3"], "4 heads cannot be split across tp 3"),
    (["--dp", "0"], "dp_size must be at least 1, got 0"),
    (["--schedule", "pipedream", "--dp", "2"], "run it with --dp 1, not 2"),
    (["--pp", "2", "--microbatches", "4", "--dp", "2", "--batch-size", "12"],
     "batch size 12 is not divisible by 4 microbatches x 2 replicas"),
])
def test_train_cli_refuses_bad_grids_in_one_line(tmp_path, capsys, args, message):
    from pplab.cli.main import main

    out = tmp_path / "run"
    assert main(["train", *args, "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
