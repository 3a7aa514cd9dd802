"""Tensor- and data-parallel layers on real gloo ranks against a single-process reference.

Every spawn checks several things at once (starting torch dominates the cost): the loss, every
gradient (sharded ones against the matching slice of the reference gradient), and the bytes
of every recorded all-reduce against the closed forms of pplab.formulas.parallel.

    pytest -q tests/test_parallel_layers.py
"""

from __future__ import annotations

import pytest
from distributed import run_ranks

from pplab.formulas import parallel as formulas

pytestmark = pytest.mark.multiprocess

SHAPES = {"vocab_size": 16, "seq_len": 8, "d_model": 16, "n_heads": 4, "n_layers": 2,
          "d_ff": 32, "seed": 3}
BATCH = 4


def _reference():
    """Full-model loss and gradients by parameter name, float64, one process."""
    import torch

    from pplab.engine.data import make_task
    from pplab.engine.model import ModelConfig, build_reference_model, lm_loss

    config = ModelConfig(**SHAPES)
    model = build_reference_model(config, torch.float64)
    tokens, targets = make_task("reverse", config.seq_len).batch(config.seed, 0, BATCH)
    loss = lm_loss(model(tokens), targets)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return config, tokens, targets, loss.item(), grads


def _gradient_errors(stage, reference_grads) -> dict[str, float]:
    """Largest |grad - reference| per parameter, the reference cut to this rank's shard."""
    names = stage.reference_names()
    errors = {}
    for name, param in stage.named_parameters():
        expected = reference_grads[names[name]]
        owner = stage.get_submodule(name.rsplit(".", 1)[0])
        if hasattr(owner, "shard_of"):
            expected = owner.shard_of(expected)
        assert param.grad is not None, f"{name} has no gradient"
        assert param.grad.shape == expected.shape, f"{name}: {param.grad.shape} {expected.shape}"
        errors[name] = float((param.grad - expected).abs().max())
    return errors


def _allreduces(recorder) -> list[tuple[str, int, int]]:
    return [(row[9], row[8], row[1]) for row in recorder.rows if row[0] == "allreduce"]


def _parallel_worker(rank: int, world: int, report, tp_size: int, dp_size: int) -> dict:
    """One pp stage holding the whole model, split tp x dp ways on the Topology's groups."""
    import torch

    from pplab.engine.data import microbatches
    from pplab.engine.data_parallel import allreduce_gradients
    from pplab.engine.model import lm_loss
    from pplab.engine.partition import build_stage
    from pplab.engine.recorder import Recorder
    from pplab.engine.tensor_parallel import parallelize_stage
    from pplab.topology import Topology

    config, tokens, targets, ref_loss, ref_grads = _reference()
    topology = Topology(1, tp_size, dp_size, world=world)
    coords = topology.coords(rank)
    groups = topology.build_groups(rank)
    recorder = Recorder(rank)
    stage = build_stage(config, (config.n_layers,), 0, torch.float64)
    parallelize_stage(stage, groups.tp_group, coords.tp, tp_size, recorder)
    ((my_tokens, my_targets),) = microbatches(tokens, targets, 1, coords.dp, dp_size)
    loss = lm_loss(stage(my_tokens), my_targets)
    loss.backward()
    allreduce_gradients(stage, groups.dp_group, dp_size, recorder)
    losses = [torch.zeros(()) for _ in range(world)]
    torch.distributed.all_gather(losses, loss.detach().float())
    return {
        "ref_loss": ref_loss,
        "replica_losses": [float(v) for v in losses],
        "grad_errors": _gradient_errors(stage, ref_grads),
        "allreduces": _allreduces(recorder),
        "n_params": sum(p.numel() for p in stage.parameters()),
    }


def _expected_bytes(tp_size: int, dp_size: int) -> tuple[int, int]:
    b = BATCH // dp_size
    s = SHAPES
    tp = formulas.tp_allreduce_bytes(s["n_layers"], 1, b, s["seq_len"], s["d_model"], tp_size,
                                     dp_size, bytes_per_element=8)
    dp = formulas.dp_allreduce_bytes((s["n_layers"],), s["d_model"], s["d_ff"],
                                     s["vocab_size"], s["seq_len"], tp_size, dp_size,
                                     bytes_per_element=8)
    return tp, dp


# tp alone and dp alone run through the engine in test_parallel_engine.py; here both at once.
@pytest.mark.parametrize("tp_size,dp_size", [(2, 2)])
def test_parallel_step_matches_single_process(tp_size, dp_size):
    world = tp_size * dp_size
    results = run_ranks(world, _parallel_worker, tp_size, dp_size)
    ref_loss = results[0]["ref_loss"]
    replica_losses = results[0]["replica_losses"]
    # The replicas' losses are means over equal slices, so their mean is the full-batch loss.
    assert sum(replica_losses) / world == pytest.approx(ref_loss, rel=1e-6)
    if dp_size == 1:
        assert replica_losses == pytest.approx([ref_loss] * world, rel=1e-6)
    for rank, result in enumerate(results):
        worst = max(result["grad_errors"].items(), key=lambda item: item[1])
        assert worst[1] < 1e-12, f"rank {rank}: {worst[0]} differs from the reference by {worst}"
    tp_measured = sum(b for r in results for d, b, _ in r["allreduces"] if d.startswith("tp"))
    dp_measured = sum(b for r in results for d, b, _ in r["allreduces"] if d == "dp grads")
    assert (tp_measured, dp_measured) == _expected_bytes(tp_size, dp_size)
    for result in results:
        details = [d for d, _, _ in result["allreduces"]]
        assert details.count("tp g") == details.count("tp f") == (
            2 * SHAPES["n_layers"] if tp_size > 1 else 0)
        assert details.count("dp grads") == (1 if dp_size > 1 else 0)
        assert all(stage == 0 for _, _, stage in result["allreduces"])
    if tp_size > 1:
        shards = {r["n_params"] for r in results}
        assert len(shards) == 1 and shards.pop() < _full_parameter_count()


def _full_parameter_count() -> int:
    s = SHAPES
    return formulas.stage_parameters(s["n_layers"], s["d_model"], s["d_ff"], s["vocab_size"],
                                     s["seq_len"], True, True)


def test_block_formula_counts_the_real_model():
    import torch

    from pplab.engine.model import ModelConfig, build_reference_model

    model = build_reference_model(ModelConfig(**SHAPES), torch.float32)
    assert sum(p.numel() for p in model.parameters()) == _full_parameter_count()


def test_tensor_parallel_refuses_shapes_that_do_not_split():
    from torch import nn

    from pplab.engine.model import ModelConfig
    from pplab.engine.partition import build_stage
    from pplab.engine.tensor_parallel import parallelize_stage, shard_indices

    stage = build_stage(ModelConfig(**SHAPES), (SHAPES["n_layers"],), 0)
    with pytest.raises(ValueError, match="4 attention heads are not divisible by tp 3"):
        parallelize_stage(stage, None, 0, 3, None)
    with pytest.raises(ValueError, match="tp rank 2 is outside tp size 2"):
        parallelize_stage(stage, None, 2, 2, None)
    with pytest.raises(ValueError, match="16 is not divisible by 3"):
        shard_indices(48, 0, 3, blocks=3)
    with pytest.raises(ValueError, match="Linear holds no transformer block to split"):
        parallelize_stage(nn.Linear(2, 2), None, 0, 2, None)
    assert all(type(m).__name__ != "ColumnParallelLinear" for m in stage.modules())


def test_data_parallel_refuses_an_empty_group():
    from torch import nn

    from pplab.engine.data_parallel import allreduce_gradients

    with pytest.raises(ValueError, match="dp size must be at least 1, got 0"):
        allreduce_gradients(nn.Linear(2, 2), None, 0)


def test_shards_of_qkv_keep_whole_heads():
    from pplab.engine.tensor_parallel import shard_indices

    # d = 8, 4 heads of width 2, tp 2: rank 1 holds heads 2 and 3 of q, of k and of v.
    assert shard_indices(24, 1, 2, blocks=3).tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21,
                                                          22, 23]
