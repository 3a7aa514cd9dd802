"""Request checks, run names, the model's shape, the data, partitioning: no ranks started here.

    pytest -q tests/test_engine_config.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import torch
from command_helpers import run_pplab
from lanes import fast_first

from pplab.classroom.training_jobs import RunPageForm
from pplab.cli.train import add_parser, config_from_args, train_argv
from pplab.engine import machine
from pplab.engine.data import make_task, microbatches
from pplab.engine.model import build_reference_model, lm_loss
from pplab.engine.partition import build_stage
from pplab.engine.rank_watch import PHASES, RankProgress, slowest_rank
from pplab.engine.request import check_request, new_run_dir, run_label, split_layers
from pplab.engine.train_config import ModelConfig, TrainConfig, parse_fault, vocab_size
from pplab.engine.weights import WeightStash
from pplab.topology import Topology


def test_split_layers_balanced_explicit_and_errors():
    assert split_layers(8, 3) == (3, 3, 2)
    assert split_layers(4, 4) == (1, 1, 1, 1)
    assert split_layers(8, 3, [2, 2, 4]) == (2, 2, 4)
    with pytest.raises(ValueError, match="4 stages need at least 4 layers; the model has 3"):
        split_layers(3, 4)
    with pytest.raises(ValueError, match="sums to 7 layers; the model has 8"):
        split_layers(8, 3, [3, 3, 1])
    with pytest.raises(ValueError, match="has 2 parts for 3 stages"):
        split_layers(8, 3, [4, 4])


@pytest.mark.slow
def test_stages_chain_to_the_reference_model():
    config = ModelConfig(d_model=16, n_heads=2, n_layers=5, d_ff=32, seq_len=8, seed=3)
    reference = build_reference_model(config)
    tokens = torch.randint(0, config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    x = tokens
    split = split_layers(5, 3, [1, 3, 1])
    for index in range(3):
        stage = build_stage(config, split, index)
        names = stage.reference_names()
        ref_params = dict(reference.named_parameters())
        for local, param in stage.named_parameters():
            torch.testing.assert_close(param, ref_params[names[local]])
        x = stage(x)
    torch.testing.assert_close(x, reference(tokens))
    assert set(dict(reference.named_parameters())) >= {"embed.weight", "pos.weight",
                                                        "blocks.4.attn.qkv.weight",
                                                        "blocks.0.mlp.fc.weight", "head.weight"}
    block = reference.blocks[0]
    assert block.attn.qkv.out_features == 48 and block.attn.n_heads == 2
    assert block.mlp.proj.in_features == 32


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights():
    a = build_reference_model(ModelConfig(seed=1))
    b = build_reference_model(ModelConfig(seed=1))
    c = build_reference_model(ModelConfig(seed=2))
    torch.testing.assert_close(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_tasks_are_deterministic_and_learnable_shapes(tmp_path):
    task = make_task("reverse", 9)
    tokens, targets = task.batch(seed=1, step=4, batch_size=3)
    again, _ = task.batch(seed=1, step=4, batch_size=3)
    assert torch.equal(tokens, again) and tokens.shape == (3, 9)
    torch.testing.assert_close(targets[:, :-1], tokens[:, 1:])
    digits = tokens[0, :5]
    assert torch.equal(targets[0, 5:9], digits.flip(0)[:4])  # after the separator: reversed
    sort_tokens, sort_targets = make_task("sort", 9).batch(1, 4, 3)
    assert torch.equal(sort_targets[0, 5:9], sort_tokens[0, :5].sort().values[:4])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello pipeline world\n" * 10)
    text = make_task("text", 8, str(corpus))
    assert text.vocab_size == len(set(corpus.read_text()))
    # The request's vocab, counted without torch, is the one the data loader builds.
    assert vocab_size(TrainConfig(task="text", text=str(corpus), seq_len=8)) == text.vocab_size
    x, y = text.batch(0, 0, 4)
    torch.testing.assert_close(y[:, :-1], x[:, 1:])
    parts = microbatches(x, y, 2, dp_rank=1, dp_size=2)
    assert len(parts) == 2 and parts[0][0].shape == (1, 8)
    torch.testing.assert_close(parts[0][0], x[2:3])


@pytest.mark.slow  # trains the toy GPT for hundreds of steps in one process
def test_reverse_task_loss_falls_in_a_few_hundred_steps():
    config = ModelConfig(d_model=32, n_heads=2, n_layers=2, d_ff=64, seq_len=16, seed=0)
    model = build_reference_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig().lr)
    task = make_task("reverse", 16)
    losses = []
    for step in range(300):
        tokens, targets = task.batch(0, step, 32)
        loss = lm_loss(model(tokens), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    # Only the answer half is predictable: from ln(16) = 2.77 towards about 1.4.
    assert sum(losses[:10]) / 10 > 2.5
    assert sum(losses[-10:]) / 10 < 1.8


@pytest.mark.parametrize(("changes", "message"), [
    ({"pp_size": 4, "layers": 3}, "4 stages need at least 4 layers; the model has 3"),
    ({"microbatches": 3, "batch_size": 16}, "batch size 16 is not divisible by 3 microbatches"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"schedule": "nope"}, "unknown schedule 'nope'"),
    ({"schedule": "interleaved-1f1b", "pp_size": 2, "microbatches": 3, "chunks": 2},
     "not a multiple of 2"),
    ({"split": (3, 1, 1), "layers": 5}, "has 3 parts for 2 stages"),
    ({"heads": 3}, "d_model 64 is not divisible by 3 heads"),
    ({"tp_size": 3}, "4 heads cannot be split across tp 3"),
    ({"task": "text"}, "--task text needs --text FILE"),
    ({"fault": "one:two"}, "fault must look like"),
    ({"schedule": "pipedream", "dp_size": 2}, "--dp 1, not 2"),
    ({"tp_size": 2, "fault": "4:0:kill"},
     "fault rank 4 is outside the world of pp 2 x tp 2 x dp 1 = 4 ranks"),
])
def test_config_errors_are_one_clear_line(changes, message):
    with pytest.raises(ValueError, match=message) as caught:
        check_request(TrainConfig(**changes))
    assert "\n" not in str(caught.value)


def test_an_existing_run_directory_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="already exists; choose a new run directory"):
        check_request(TrainConfig(out=str(tmp_path)))


def test_cli_config_error_exits_2_before_spawning(capsys):
    code, out, err = run_pplab(capsys, "train", "--pp", "4", "--layers", "3", "--json-progress")
    assert code == 2
    assert err.strip() == "pplab train: 4 stages need at least 4 layers; the model has 3"
    assert '"event": "error"' in out


def test_cli_refuses_a_deadlocking_csv_in_one_line(tmp_path, capsys):
    schedule = tmp_path / "stuck.csv"
    schedule.write_text("0F0,0B0\n1B0,1F0\n")  # rank 1 runs its backward before its forward
    code, _, err = run_pplab(capsys, "train", "--csv", str(schedule))
    assert code == 2
    err = err.strip()
    assert err.startswith("pplab train: dependency broken: 1B0 on rank 1 needs 1F0")
    assert "\n" not in err


def test_topology_numbering_and_fault_parsing():
    grid = Topology(2, 2, 2)
    assert grid.world_size == 8 and grid.describe() == "pp 2 x tp 2 x dp 2 = 8 ranks"
    assert grid.coords(5) == (1, 0, 1) and grid.rank_of(1, 0, 1) == 5
    with pytest.raises(ValueError, match="world size 6 != pp 2 x tp 2 x dp 2"):
        Topology(2, 2, 2, world=6)
    fault = parse_fault("1:2:kill")
    assert fault == (1, 2, "kill") and fault.rank == 1


@pytest.mark.slow  # starts Python
def test_the_plan_check_imports_no_torch():
    # The CLI and the app check a request before anything starts; that must stay cheap.
    code = ("import sys; from pplab.engine.request import check_request; "
            "from pplab.engine.train_config import TrainConfig; "
            "import pplab.classroom.training_jobs, pplab.cli.train, pplab.engine.compare, "
            "pplab.engine.supervisor; "
            "check_request(TrainConfig(pp_size=2, tp_size=2)); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _request(**changes):
    return check_request(TrainConfig(out="-", **changes))


def test_runs_are_named_by_what_they_are_in_one_place(tmp_path):
    assert run_label(_request(pp_size=2, microbatches=4)) == "1f1b-p2m4"
    assert run_label(_request(schedule="interleaved-1f1b", pp_size=2, chunks=2, microbatches=4,
                           tp_size=2)) == "interleaved-1f1b-p2m4v2-tp2"
    assert run_label(_request(schedule="gpipe", pp_size=1, microbatches=1, tp_size=4)) == "tp4"
    assert run_label(_request(pp_size=1, microbatches=2, dp_size=2)) == "dp2-m2"
    assert _request(pp_size=1, microbatches=1, tp_size=4).describe() == "tp=4"
    assert _request(schedule="zb-h1", pp_size=2, dp_size=2).describe() == "zb-h1 pp=2 m=4 dp=2"
    schedule = tmp_path / "my order.csv"
    schedule.write_text("0F0,0B0\n1F0,1B0\n")
    assert run_label(_request(csv=str(schedule))) == "my-order-p2m1"
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = new_run_dir(tmp_path, _request(), now)
    assert first == tmp_path / "20260102-030405-1f1b-p2m4"
    first.mkdir()
    assert new_run_dir(tmp_path, _request(), now).name == "20260102-030405-1f1b-p2m4-2"


def test_ranks_beyond_the_machine_are_warned_refused_or_bounded():
    four = Topology(4)
    assert machine.sharing_warning(Topology(2), "cpu", 2) is None
    assert machine.sharing_warning(four, "cpu", 2) == (
        "4 ranks on 2 CPU cores: ranks take turns, so measured times show CPU sharing, "
        "not the schedule")
    plenty = 2**40  # bytes of memory: the count, not the memory, is under test here
    machine.check_not_absurd(Topology(8), "cpu", 2, memory=plenty)  # 4 per core: allowed
    with pytest.raises(ValueError, match="pp 9 x tp 1 x dp 1 = 9 ranks on 2 CPU cores is more "
                                         "than .* pass --oversubscribe"):
        machine.check_not_absurd(Topology(9), "cpu", 2, memory=plenty)
    machine.check_not_absurd(Topology(9), "cpu", 2, oversubscribe=True, memory=plenty)
    with pytest.raises(ValueError, match="65 ranks on 64 CPU cores"):
        machine.check_not_absurd(Topology(65), "cpu", 64, memory=plenty)
    with pytest.raises(ValueError, match="= 9 ranks need about 3 GiB of memory"):
        machine.check_not_absurd(Topology(9), "cpu", 2, oversubscribe=True, memory=2**30)
    with pytest.raises(ValueError, match="= 4 ranks, but this machine has 2 CPU cores"):
        machine.check_fits(four, "cpu", 2)


def test_the_app_request_is_checked_by_the_plan_and_its_own_bounds():
    good = RunPageForm("1f1b", 2, 2, 1, 2, 2, 4)
    assert good.check(rank_limit=2).topology.world_size == 2
    for request, message in (
            (RunPageForm("1f1b", 2, 2, 1, 2, 2, 5), "batch size 5 is not divisible by 2 "
                                                     "microbatches"),
            (RunPageForm("1f1b", 2, 2, 1, 201, 2, 4), "steps must be 1..200, got 201"),
            (RunPageForm("1f1b", 2, 2, 1, 2, 2, 4, tp=2), "= 4 ranks, but this machine has 2"),
            (RunPageForm("interleaved-1f1b", 2, 3, 1, 2, 4, 6), "not a multiple of 2")):
        with pytest.raises(ValueError, match=message):
            request.check(rank_limit=2)
    # A family with one chunk per rank ignores the chunks field; interleaved takes its least.
    assert RunPageForm("1f1b", 2, 2, 3, 2, 2, 4).config().chunks is None
    assert RunPageForm("interleaved-1f1b", 2, 2, 1, 2, 4, 4).config().chunks == 2


@pytest.mark.parametrize("config", [
    TrainConfig(),
    TrainConfig(schedule="zb-h1", pp_size=3, microbatches=5, steps=2, layers=6,
                split=(2, 2, 2), batch_size=10, seq_len=8, d_model=32, heads=2, d_ff=64,
                lr=0.002, dtype="float64", seed=3, out="runs/x", record=False, timeout=12.5,
                tp_size=2, dp_size=1, fault="1:0:raise", device="cuda", task="sort"),
])
def test_a_config_goes_to_the_command_line_and_back_unchanged(config):
    parser = argparse.ArgumentParser(prog="pplab")
    add_parser(parser.add_subparsers(dest="command"))
    assert config_from_args(parser.parse_args(["train", *train_argv(config)])) == config


def test_a_timeout_blames_the_rank_furthest_behind():
    joined = PHASES.index("joined")
    heard = {0: RankProgress(joined, 5, 30.0), 1: RankProgress(joined, 3, 20.0),
             2: RankProgress(joined, 3, 10.0), 3: RankProgress(joined, 4, 5.0)}
    assert slowest_rank(heard) == 2  # lowest step; of the two at step 3, the quieter one
    heard[4] = RankProgress(PHASES.index("started"), -1, 40.0)
    assert slowest_rank(heard) == 4  # one that never joined is behind everyone
    assert heard[4].where() == "it had not joined the process group"


def test_weight_stash_keeps_versions_until_their_last_user():
    module = torch.nn.Linear(2, 2)
    stash = WeightStash(module)
    v0, params0 = stash.acquire()
    stash.advance()
    v1, params1 = stash.acquire()
    assert (v0, v1) == (0, 1) and set(stash.snapshots) == {0, 1}
    params0["weight"].grad = torch.ones(2, 2)
    stash.release(v0)
    assert set(stash.snapshots) == {1}
    torch.testing.assert_close(module.weight.grad, torch.ones(2, 2))
    assert stash.max_live_versions == 2


def _stage_gradients(split: bool, stage_index: int):
    from pplab.engine.stage import StageRuntime

    config = ModelConfig(d_model=16, n_heads=2, n_layers=3, d_ff=32, seq_len=8, seed=5)
    module = build_stage(config, (1, 2), stage_index, torch.float64)
    runtime = StageRuntime(module, torch.optim.SGD(module.parameters(), lr=0.1), 0.5,
                           split_backward=split)
    generator = torch.Generator().manual_seed(1)
    if stage_index == 0:
        x = torch.randint(0, config.vocab_size, (2, 8), generator=generator)
    else:
        x = torch.randn(2, 8, 16, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, config.vocab_size, (2, 8), generator=generator)
    grad_out = None if stage_index == 1 else torch.randn(2, 8, 16, generator=generator,
                                                         dtype=torch.float64)
    runtime.forward(0, x, targets if stage_index == 1 else None, 0)
    if split:
        grad_in = runtime.backward_input(0, grad_out)
        runtime.backward_weight(0)
    else:
        grad_in = runtime.backward(0, grad_out)
    return runtime, grad_in, {n: p.grad for n, p in module.named_parameters()}


def test_a_run_checks_its_request_once_and_hands_that_object_to_its_ranks(monkeypatch, capsys):
    # pplab train checks the request, and the launch and the supervisor pass that one object
    # on (the ranks read even the fault from it): nothing along the way checks it again.
    from pplab.engine import launch, request, supervisor

    checked, handed = [], []
    real = request._schedule  # every check starts here, however check_request was imported

    def counted(config):
        checked.append(config)
        return real(config)

    def spawn(world_size, fn, *args, **options):
        handed.append(args)
        raise supervisor.RankFailed("rank 0 failed: stopped here by the test")

    monkeypatch.setattr(request, "_schedule", counted)
    monkeypatch.setattr(launch, "spawn_ranks", spawn)
    monkeypatch.setattr(machine, "rank_slots", lambda device: 2)
    code, _, err = run_pplab(capsys, "train", "--pp", "2", "--microbatches", "2", "--steps",
                             "3", "--fault", "1:2:raise", "--out", "-")
    assert code == 1 and "stopped here by the test" in err
    assert len(checked) == 1 and len(handed) == 1
    assert handed[0][0].config is checked[0] and handed[0][0].fault == (1, 2, "raise")


@pytest.mark.parametrize("stage_index", fast_first(1, [0, 1]))
def test_split_backward_i_then_w_equals_full_backward(stage_index):
    split, split_in, split_grads = _stage_gradients(True, stage_index)
    _, full_in, full_grads = _stage_gradients(False, stage_index)
    # Stage 1 takes the fast path (W from kept output gradients); stage 0 has embeddings.
    assert split.split_weights == (stage_index == 1)
    if stage_index == 1:
        torch.testing.assert_close(split_in, full_in)
    for name, grad in full_grads.items():
        torch.testing.assert_close(split_grads[name], grad, msg=lambda m, n=name: f"{n}: {m}")
