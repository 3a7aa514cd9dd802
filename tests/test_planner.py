"""The planner: hand-checked sizes, the papers' formulas and tables, GPT-3 on 4096 GPUs, bad input.

Published numbers are quoted with their place in the paper; each comparison states its
tolerance. Pure Python: the deep-pipeline rows of Narayanan et al.'s Table 1 (p = 35, 64)
take seconds to simulate and are marked slow.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest

from pplab.formulas.parallel import activation_bytes, block_parameters
from pplab.planner import (
    KORTHIKANTI_TABLE5,
    MEGATRON_TABLE1,
    MEGATRON_TABLE2,
    PRESET_CLUSTERS,
    PRESET_MODELS,
    ClusterSpec,
    ModelSpec,
    NoFeasiblePlan,
    evaluate,
    explain,
    flops,
    in_flight,
    layer_activation_bytes,
    load_spec,
    pipeline_events,
    plan,
)
from pplab.planner.estimate import grid_problem
from pplab.planner.flops import LayerTimes, layer_times
from pplab.planner.memory import stage_memories, stage_parameters
from pplab.planner.search import chunk_options, microbatch_options, valid_grids
from pplab.planner.timing import PipelineCosts, pipeline_time
from pplab.schedules import build
from pplab.sim.simulator import simulate
from pplab.timeline import metrics

GIB = 2**30
A100 = PRESET_CLUSTERS["dgx-a100-80gb"]
GPT3 = PRESET_MODELS["gpt3-175b"]
TINY = ModelSpec("tiny", layers=4, hidden=8, heads=2, seq_len=4, vocab=16)


def fast_cluster(gpus_per_node: int = 8, nodes: int = 1) -> ClusterSpec:
    """Links so fast that messages and all-reduces cost nothing measurable."""
    return ClusterSpec("fast", gpus_per_node, nodes, memory_gib=80, peak_tflops=100,
                       intra_node_gbs=1e6, inter_node_gbs=1e6)


# -- hand-checkable sizes ---------------------------------------------------------------------

def test_tiny_model_weights_gradients_and_optimizer_bytes_by_hand():
    # h = 8, f = 32, t = 2. A layer: layer norms 4h = 32 and two output biases 2h = 16 stay
    # whole; QKV 3h^2+3h = 216, projection h^2 = 64, MLP hf+f+fh = 544 split in two: 412.
    assert block_parameters(8, 32, 2) == 32 + 16 + 412 == 460
    assert TINY.parameters == 4 * (12 * 64 + 13 * 8) + (16 + 4) * 8 + 2 * 8 == 3664
    # pp = 2: rank 0 has 2 layers, half the word embedding (16 x 8 / 2) and the positions
    # (4 x 8); rank 1 has 2 layers, the final norm (2h) and its copy of the word embedding.
    assert stage_parameters(TINY, 2, 2, 0) == 920 + 64 + 32 == 1016
    assert stage_parameters(TINY, 2, 2, 1) == 920 + 16 + 64 == 1000
    first, last = stage_memories(TINY, 2, 2, 1, 4, "1f1b", 1, "none", True)
    assert (first.weights, first.gradients, first.optimizer) == (2032, 2032, 12192)
    assert last.model_states == 16 * 1000  # 2 + 2 + 12 bytes per parameter (ZeRO, Sec. 3.1)
    fp32 = replace(TINY, precision="fp32")
    assert stage_memories(fp32, 2, 2, 1, 4, "1f1b", 1, "none", True)[1].model_states == 16000


def test_activation_bytes_per_layer_are_korthikanti_table2():
    # Korthikanti et al. 2022, Table 2, bytes per layer, for GPT-3's sizes with t = 8.
    s, b, h, a, t = 2048, 1, 12288, 96, 8
    sbh, attention = s * b * h, 5 * a * s / h
    table2 = {
        ("none", False, 1): sbh * (34 + attention),
        ("none", False, t): sbh * (10 + 24 / t + attention / t),
        ("none", True, t): sbh / t * (34 + attention),
        ("selective", False, t): sbh * (10 + 24 / t),
        ("selective", True, t): sbh * 34 / t,
        ("full", False, t): sbh * 2,
    }
    for (recompute, sp, tp), published in table2.items():
        ours = layer_activation_bytes(GPT3, b, tp, recompute, sp)
        assert ours == pytest.approx(published, rel=1e-12), (recompute, sp, tp)
    # With sequence parallelism the checkpointed input is itself split: 2sbh / t.
    assert layer_activation_bytes(GPT3, b, t, "full", True) == pytest.approx(2 * sbh / t)


def test_first_stage_holds_L_layers_under_1f1b_and_more_when_interleaved():
    # Korthikanti eq. (5) plus the embedding dropout of Sec. 4.3: sbhL/t (34 + 5as/h) + sbhp/t.
    s, h, a, L, t, p = 2048, 12288, 96, 96, 8, 8
    first = stage_memories(GPT3, p, t, 1, 64, "1f1b", 1, "none", True)[0]
    assert first.in_flight == p
    published = s * h * L / t * (34 + 5 * a * s / h) + s * h * p / t
    assert first.activations == pytest.approx(published, rel=1e-12)
    # Interleaved with v chunks: L (1 + (p-1)/(p v)) layers' worth (Sec. 4.2.3).
    for v in (2, 3, 4):
        held = in_flight("interleaved-1f1b", p, 64, v, 0) * L // (p * v)
        assert held == pytest.approx(L * (1 + (p - 1) / (p * v)))
    # Later 1F1B stages hold fewer microbatches: p - r.
    ranks = stage_memories(GPT3, p, t, 1, 64, "1f1b", 1, "none", True)
    assert [r.in_flight for r in ranks] == [8, 7, 6, 5, 4, 3, 2, 1]


def _walked_peak(schedule, rank: int) -> int:
    """Most chunk activations ``rank`` holds, walking its order: F adds, B or W releases."""
    held = peak = 0
    for action in schedule.actions[rank]:
        held += {"F": 1, "B": -1, "W": -1}.get(action.kind, 0)
        peak = max(peak, held)
    return peak


@pytest.mark.parametrize("name, v", [("gpipe", 1), ("1f1b", 1), ("zb-h1", 1),
                                     ("interleaved-1f1b", 2), ("interleaved-1f1b", 3)])
def test_in_flight_counts_are_what_the_registered_orders_hold(name, v):
    for p in range(1 if v == 1 else 2, 7):
        for m in ([1, 2, p, p + 1, 2 * p + 3, 4 * p] if v == 1 else [p, 2 * p, 3 * p]):
            schedule = build(name, p, m, v if v > 1 else None)
            for rank in range(p):
                assert in_flight(name, p, m, v, rank) == _walked_peak(schedule, rank), (p, m)


def test_bytes_per_link_by_hand():
    cluster = fast_cluster(gpus_per_node=8, nodes=2)
    c = evaluate(TINY, cluster, 16, pp=4, tp=2, dp=2, microbatch_size=2, timed=False)
    m, b, s, h, e, t, d = 4, 2, 4, 8, 2, 2, 2
    message = b * s * h * e / t  # each tp GPU sends 1/t of the boundary activation
    assert c.traffic.pp_bytes == m * 2 * message  # a middle rank: m forward, m backward
    ring = 2 * (t - 1) / t * b * s * h * e  # one all-reduce of b s h over t GPUs
    assert c.traffic.tp_bytes == m * 1 * 4 * ring  # 1 layer per rank, 4 all-reduces each
    gradients = 2 * stage_parameters(TINY, 4, 2, 0)  # rank 0 has the most parameters
    assert c.traffic.dp_bytes == pytest.approx(2 * (d - 1) / d * gradients)
    # Ranks go tp fastest, then dp, then pp: pp rank i starts at GPU 4i, so the hop from pp
    # rank 1 (GPUs 4-7) to 2 (GPUs 8-11) leaves the node; each dp pair stays inside one.
    assert (c.traffic.pp_link, c.traffic.dp_link) == ("inter-node", "NVLink")
    one_node = evaluate(TINY, fast_cluster(gpus_per_node=8), 16, pp=2, tp=2, dp=2, timed=False)
    assert one_node.traffic.pp_link == "NVLink"


@pytest.mark.parametrize("name, v", [("gpipe", 1), ("1f1b", 1), ("interleaved-1f1b", 2)])
def test_bubble_is_the_closed_form_when_messages_are_free(name, v):
    model = ModelSpec("no-logits", layers=8, hidden=64, heads=4, seq_len=16, vocab=1)
    for p, m in ((2, 4), (4, 8), (4, 12)):
        c = evaluate(model, fast_cluster(gpus_per_node=p), m, pp=p, tp=1, dp=1,
                     microbatch_size=1, schedule=name, num_chunks=v)
        expected = (p - 1) / (v * m + p - 1)
        assert c.bubble_fraction == pytest.approx(expected, abs=1e-3)
        assert c.bubble_closed_form == pytest.approx(expected)


# -- FLOPs and the cost model -------------------------------------------------------------------

def test_flop_counts_are_the_papers_equations():
    B = 1536
    assert flops.hardware_flops(GPT3, B, "full") == pytest.approx(flops.narayanan_eq3(GPT3, B))
    assert flops.model_flops(GPT3, B) == pytest.approx(flops.korthikanti_eq7(GPT3, B))
    # Selective recomputation reruns "attention matrix computation (2Bs^2h operations) and
    # attention over values (2Bs^2h operations)" (Korthikanti Appendix A): 4 B s^2 h a layer.
    s, h, L, V = GPT3.seq_len, GPT3.hidden, GPT3.layers, GPT3.vocab
    rerun = 4 * B * s * s * h * L
    selective = flops.hardware_flops(GPT3, B, "selective")
    assert selective == pytest.approx(flops.korthikanti_eq7(GPT3, B) + rerun)
    # Their eq. (8), 72BLsh^2 (1 + s/(3h) + V/(12hL)), adds three times that: the factor behind
    # their "2.7%" overhead for GPT-3 and their HFU/MFU ratios. docs/planner.md notes it.
    eq8 = 72 * B * L * s * h * h * (1 + s / (3 * h) + V / (12 * h * L))
    assert eq8 - flops.korthikanti_eq7(GPT3, B) == pytest.approx(3 * rerun)


def test_parameter_counts_round_to_megatron_table1():
    for row in MEGATRON_TABLE1 + MEGATRON_TABLE2:
        assert round(PRESET_MODELS[row.model].parameters / 1e9, 1) == row.parameters_billion


def test_one_layer_takes_the_time_korthikanti_table4_measured():
    # Table 4: one layer of the 22B model (tp = 8, b = 4) on A100s, in ms. The combined
    # baseline time is the point MATMUL_EFFICIENCY was chosen from (2 %); the split into
    # forward and backward and the recompute rows are predictions (15 %).
    model = PRESET_MODELS["korthikanti-22b"]
    base, full, sel = (layer_times(model, A100, 4, 8, r) for r in ("none", "full", "selective"))
    assert base.total * 1e3 == pytest.approx(19.6, rel=0.02)
    assert base.forward * 1e3 == pytest.approx(7.7, rel=0.15)
    assert base.backward * 1e3 == pytest.approx(11.9, rel=0.15)
    assert full.backward * 1e3 == pytest.approx(19.5, rel=0.15)
    assert sel.backward * 1e3 == pytest.approx(13.2, rel=0.15)


@pytest.mark.slow
def test_simulating_small_and_extending_matches_simulating_all():
    layer = LayerTimes(1, 0, 1, 1, 0, 0, 0)
    worst = {"short messages": 0.0, "long messages": 0.0}
    for name, v in (("gpipe", 1), ("1f1b", 1), ("zb-h1", 1), ("interleaved-1f1b", 2)):
        for p, b, c, last, mixed in itertools.product((4,), (2.0, 3.0), (0.0, 0.1, 1.0),
                                                      (1.3,), (False, True)):
            links = tuple(0.1 if mixed and s % 2 == 0 else 1.0 for s in range(p * v - 1))
            costs = PipelineCosts(layer, 1, 1.0, b / 2, b / 2, 0.0, last, 1e6, c, links)
            m = 7 * p
            extended = pipeline_time(name, p, m, v, costs)
            assert extended.simulated == (2 * p, 3 * p)
            events = simulate(build(name, p, m, v if v > 1 else None), costs.cost_model())
            direct = events["end"].max() - events["start"].min()
            kind = "short messages" if c * v < 1 else "long messages"
            worst[kind] = max(worst[kind], abs(extended.makespan - direct) / direct)
    assert worst["short messages"] < 2e-3  # exact but for mixed NVLink/InfiniBand hops
    assert worst["long messages"] < 0.03  # interleaved, a message as long as a forward


# -- published memory ---------------------------------------------------------------------------

def test_selective_recompute_saves_70_and_65_percent():
    # Korthikanti Sec. 5: "we can save 70% and 65% of the required memory for activations
    # for the GPT-3 and MT-NLG models". Tolerance 10 %.
    for name, published in (("gpt3-175b", 0.70), ("megatron-529.6b", 0.65)):
        model = PRESET_MODELS[name]
        kept = layer_activation_bytes(model, 1, 8, "selective", True) \
            / layer_activation_bytes(model, 1, 8, "none", True)
        assert 1 - kept == pytest.approx(published, rel=0.10)


def test_sequence_parallel_and_selective_cut_activations_five_times():
    # Korthikanti abstract and Sec. 6.1: together they "reduce activation memory by 5x",
    # "bringing the memory requirements to under 20%" of tensor parallelism alone (Eq. 2).
    for row in KORTHIKANTI_TABLE5[::2]:
        model = PRESET_MODELS[row.model]
        baseline = layer_activation_bytes(model, 1, 8, "none", False)
        both = layer_activation_bytes(model, 1, 8, "selective", True)
        assert both / baseline < 0.20 * 1.10, row.model
        if row.model != "korthikanti-22b":  # 22B's long attention term makes it 6.2x
            assert baseline / both == pytest.approx(5, rel=0.10), row.model


def test_which_korthikanti_configurations_fit_in_80_gb():
    # Sec. 1 and Fig. 1: every baseline (tensor parallelism, no recomputation) needs more
    # than an A100's 80 GB; with sequence parallelism and selective recomputation all fit.
    # Sec. 6.1: without both together none fits: true here for 175B, 530B and 1T; our 22B
    # fits with selective recomputation alone (71 GiB, docs/planner.md says why).
    for row in KORTHIKANTI_TABLE5[::2]:
        assert not _as_run(row, "none", False).fits, row.model
        assert not _as_run(row, "none", True).fits, row.model
        assert _as_run(row, "selective", True).fits, row.model
        if row.model != "korthikanti-22b":
            assert not _as_run(row, "selective", False).fits, row.model


def _as_run(row, recompute: str, sequence_parallel: bool):
    """The memory of a published run's layout under another recomputation."""
    return evaluate(PRESET_MODELS[row.model], A100.with_nodes(row.gpus // 8), row.global_batch,
                    pp=row.pp, tp=row.tp, dp=row.dp, microbatch_size=row.microbatch,
                    schedule=row.schedule, num_chunks=row.num_chunks, recompute=recompute,
                    sequence_parallel=sequence_parallel, timed=False)


def test_530b_first_stage_output_tensors_are_2_73_gb():
    # Korthikanti Appendix B: deallocating each in-flight microbatch's output saves
    # "sbhp = 2.73 GB" on the 530B model's first stage (2-byte elements, GiB). Tolerance 1 %.
    one = activation_bytes(1, 2048, 20480, 2)
    assert one * in_flight("1f1b", 35, 280, 1, 0) / GIB == pytest.approx(2.73, rel=0.01)


def test_model_states_of_a_1_5b_model_are_24_gb():
    # ZeRO (Rajbhandari et al. 2020), Sec. 3.1: a 1.5B GPT-2 needs "at least 24 GB" for its
    # model states, against 3 GB for its fp16 weights. GPT-2 XL's sizes; tolerance 10 %.
    gpt2 = ModelSpec("gpt2-xl", layers=48, hidden=1600, heads=25, seq_len=1024, vocab=50257,
                     precision="fp16")
    stage = stage_memories(gpt2, 1, 1, 1, 1, "1f1b", 1, "none", False)[0]
    assert stage.model_states / 1e9 == pytest.approx(24, rel=0.10)
    assert stage.weights / 1e9 == pytest.approx(3, rel=0.10)


# -- published throughput -----------------------------------------------------------------------

def _best_published(row):
    """Our estimate of a published run; Table 1 leaves b and v open: b = 1, v our choice."""
    model, cluster = PRESET_MODELS[row.model], A100.with_nodes(row.gpus // 8)
    b = row.microbatch or 1
    if row.schedule == "interleaved-1f1b" and row.num_chunks is None:
        return plan(model, cluster, row.global_batch, schedules=(row.schedule,),
                    recompute=(row.recompute,), microbatch_sizes=(b,), pp_sizes=(row.pp,),
                    tp_sizes=(row.tp,), sequence_parallel=row.sequence_parallel,
                    max_candidates=1).best
    return evaluate(model, cluster, row.global_batch, pp=row.pp, tp=row.tp, dp=row.dp,
                    microbatch_size=b, schedule=row.schedule, num_chunks=row.num_chunks,
                    recompute=row.recompute, sequence_parallel=row.sequence_parallel)


@pytest.mark.parametrize("row", [
    pytest.param(row, id=f"{row.model}-{row.gpus}gpus",
                 marks=[pytest.mark.slow] if row.pp > 8 else [])  # deeper: seconds
    for row in MEGATRON_TABLE1 + MEGATRON_TABLE2])
def test_teraflops_per_gpu_within_20_percent_of_narayanan(row):
    # Narayanan et al. SC 2021, Tables 1 and 2: achieved teraFLOP/s per GPU, counted with
    # eq. (3) (full recomputation), 80 GB A100s, interleaved schedule. Tolerance 20 %.
    ours = _best_published(row)
    assert ours.fits
    assert ours.tflops_per_gpu == pytest.approx(row.tflops_per_gpu, rel=0.20)


@pytest.mark.parametrize("row", [r for r in KORTHIKANTI_TABLE5
                                 if r.model in ("korthikanti-22b", "gpt3-175b")],
                         ids=lambda r: f"{r.model}-{r.recompute}")
def test_iteration_time_within_20_percent_of_korthikanti_table5(row):
    # Korthikanti Table 5, seconds per iteration (no data parallelism). The 530B and 1T rows
    # are 18-28 % slower here: docs/planner.md gives the numbers and the reason.
    ours = _best_published(row)
    assert ours.step_s == pytest.approx(row.iteration_s, rel=0.20)


# -- ranking ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_lower_bounds_hold_and_the_top_of_the_ranking_is_exact():
    model = PRESET_MODELS["megatron-7.5b"]
    cluster = A100.with_nodes(2)
    everything = plan(model, cluster, 32, microbatch_sizes=(1, 2), max_candidates=None)
    assert everything.timed == len(everything.feasible) == len(everything.ranked)
    for candidate in everything.ranked:
        assert candidate.lower_bound <= candidate.step_s * (1 + 1e-9)
    top = plan(model, cluster, 32, microbatch_sizes=(1, 2), max_candidates=3)
    assert [c.layout for c in top.ranked] == [c.layout for c in everything.ranked[:3]]
    assert top.timed < everything.timed


# -- GPT-3 175B on 4096 80 GB A100s -------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt3_plan():
    return plan(GPT3, A100.with_nodes(512), 1536, microbatch_sizes=(1, 2), max_candidates=5)


@pytest.mark.slow  # plans GPT-3 on 512 nodes (seconds)
def test_gpt3_8x8x64_fits_and_every_other_grid_has_a_reason(gpt3_plan):
    reference = gpt3_plan.best_for((8, 8, 64))
    assert reference is not None and reference.fits
    assert reference.peak_memory <= 80 * GIB and reference.memory[0].activations > 0
    assert 0 < reference.bubble_fraction < 0.15
    comparisons = {(c.pp, c.tp, c.dp): c for c in explain(reference, gpt3_plan)}
    assert set(comparisons) == set(gpt3_plan.grids())
    assert len(comparisons) == 91  # every ordered split of 4096 = 2^12 into three factors
    assert comparisons[(8, 8, 64)].verdict == "reference"
    for grid, comparison in comparisons.items():
        assert comparison.reason and "\n" not in comparison.reason, grid
        assert comparison.verdict in ("reference", "faster", "slower", "equal",
                                      "does not fit", "excluded"), grid
    assert "crosses nodes" in comparisons[(8, 16, 32)].reason
    assert "96 layers are not divisible by pp=64" in comparisons[(64, 8, 8)].reason
    assert comparisons[(4, 8, 128)].verdict == "does not fit"
    assert "> 80 GiB" in comparisons[(4, 8, 128)].reason
    # pp=32 has 3 layers a stage: the logit layer weighs more on the last, and the bubble grows.
    assert comparisons[(32, 8, 16)].verdict == "slower"
    assert "heavier last stage" in comparisons[(32, 8, 16)].reason
    assert "more pipeline bubble" in comparisons[(32, 8, 16)].reason
    assert comparisons[(16, 4, 64)].verdict == "slower"
    assert "more pipeline bubble" in comparisons[(16, 4, 64)].reason
    # pp=16 tp=8 dp=32 halves each GPU's gradients: a shorter data-parallel all-reduce.
    assert comparisons[(16, 8, 32)].verdict in ("faster", "equal")
    assert "data-parallel all-reduce" in comparisons[(16, 8, 32)].reason
    assert comparisons[(8, 4, 128)].verdict == "does not fit"


def test_gpt3_8x8x64_with_plain_1f1b_has_the_textbook_bubble():
    c = evaluate(GPT3, A100.with_nodes(512), 1536, pp=8, tp=8, dp=64, schedule="1f1b",
                 recompute="selective")
    assert c.fits and c.layout.num_microbatches == 24
    assert c.bubble_closed_form == pytest.approx(7 / 31)
    # Messages and the heavier last stage (the logit layer) add a little to (p-1)/(m+p-1).
    assert 7 / 31 < c.bubble_fraction < 7 / 31 + 0.03
    assert c.memory[0].total > c.memory[-1].total  # the first stage holds 8 microbatches


def test_pipeline_events_draw_one_pipeline_of_a_few_microbatches():
    c = evaluate(GPT3, A100.with_nodes(512), 1536, pp=8, tp=8, dp=64,
                 schedule="interleaved-1f1b", num_chunks=3, recompute="selective")
    events = pipeline_events(GPT3, A100.with_nodes(512), c)
    assert set(events["rank"]) == set(range(8))
    assert events["microbatch"].max() + 1 == 16  # min(m = 24, 2p)
    sends = events[events["kind"] == "send"]
    assert (sends["bytes"] == 2048 * 12288 * 2 // 8).all()
    assert 0 < metrics(events, ranks=range(8))["bubble_fraction"] < 0.5


@pytest.mark.slow  # the GPT-3 plan above
def test_results_are_strict_json(gpt3_plan):
    text = json.dumps(gpt3_plan.as_dict(), allow_nan=False)
    assert json.loads(text)["ranked"][0]["fits"] is True
    comparison = explain(gpt3_plan.best, gpt3_plan)[0]
    json.dumps(comparison.as_dict(), allow_nan=False)


# -- bad input ----------------------------------------------------------------------------------

def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert text and "\n" not in text
    return text


def test_zero_gpus_is_one_line():
    with pytest.raises(ValueError) as error:
        ClusterSpec("empty", gpus_per_node=8, nodes=0, memory_gib=80, peak_tflops=312,
                    intra_node_gbs=300, inter_node_gbs=25)
    assert "nodes must be at least 1, got 0" in _one_line(error)


def test_heads_not_divisible_by_tp_is_one_line():
    model = ModelSpec("six-heads", layers=4, hidden=48, heads=6, seq_len=8, vocab=32)
    with pytest.raises(NoFeasiblePlan) as error:
        plan(model, A100, 8, tp_sizes=(4,))
    assert "6 heads are not divisible by tp=4" in _one_line(error)
    with pytest.raises(ValueError) as error:
        evaluate(model, A100, 8, pp=1, tp=4, dp=2)
    assert "6 heads are not divisible by tp=4" in _one_line(error)


def test_layers_not_divisible_by_pp_is_one_line():
    with pytest.raises(ValueError) as error:
        evaluate(GPT3, A100.with_nodes(512), 1536, pp=64, tp=8, dp=8)
    assert "96 layers are not divisible by pp=64" in _one_line(error)
    with pytest.raises(ValueError) as error:
        evaluate(GPT3, A100.with_nodes(512), 1536, pp=8, tp=8, dp=64,
                 schedule="interleaved-1f1b", num_chunks=5)
    assert "96 layers are not divisible by pp x v = 8 x 5" in _one_line(error)


def test_memory_too_small_for_anything_says_how_much_is_needed():
    small = replace(A100, memory_gib=8).with_nodes(512)
    with pytest.raises(NoFeasiblePlan) as error:
        plan(GPT3, small, 1536, microbatch_sizes=(1,))
    text = _one_line(error)
    assert text.startswith("nothing fits: the smallest memory need is ")
    assert "with full recompute) > 8 GiB" in text and "pp=32 tp=8" in text
    assert error.value.closest.peak_memory > 8 * GIB


def test_no_possible_grid_names_the_rules():
    # 7 layers allow pp = 1 only, 6 heads tp = 1 or 2; then dp = 8 or 4 cannot split 3.
    model = ModelSpec("odd", layers=7, hidden=48, heads=6, seq_len=8, vocab=32)
    with pytest.raises(NoFeasiblePlan) as error:
        plan(model, A100, 3)
    text = _one_line(error)
    assert text.startswith("no (pp, tp, dp) of 8 GPUs can run odd: ")
    assert "global batch 3 is not divisible by dp=8" in text
    assert error.value.closest is None


def test_bad_options_are_one_line():
    for kwargs, words in (({"schedules": ("pipedream",)}, "schedule 'pipedream'"),
                          ({"recompute": ("some",)}, "recompute 'some'"),
                          ({"pp_sizes": (3,)}, "pp=3 does not divide the cluster's 8 GPUs"),
                          ({"microbatch_sizes": (0,)}, "microbatch size must be at least 1")):
        with pytest.raises(ValueError) as error:
            plan(TINY, A100, 8, **kwargs)
        assert words in _one_line(error)


# -- spec files ---------------------------------------------------------------------------------

def test_spec_files_in_toml_and_json(tmp_path):
    toml = tmp_path / "plan.toml"
    toml.write_text('global_batch = 512\n[model]\npreset = "gpt3-175b"\nseq_len = 4096\n'
                    '[cluster]\npreset = "dgx-h100"\nnodes = 64\n')
    spec = load_spec(toml)
    assert (spec.model.seq_len, spec.model.layers, spec.cluster.num_gpus, spec.global_batch) \
        == (4096, 96, 512, 512)
    data = {"model": {"name": "m", "layers": 4, "hidden": 64, "heads": 4, "seq_len": 32,
                      "vocab": 100, "ffn": 128, "precision": "fp16"}}
    (tmp_path / "m.json").write_text(json.dumps(data))
    spec = load_spec(tmp_path / "m.json")
    assert spec.model.ffn_size == 128 and spec.cluster is None and spec.global_batch is None


@pytest.mark.parametrize("text, words", [
    ('[model]\npreset = "gpt3-175b"\nlayer = 4\n', "[model]: unknown key 'layer'"),
    ('[model]\nname = "m"\nlayers = 4\n', "[model]: missing hidden, heads, seq_len, vocab"),
    ('[model]\npreset = "gpt3-175b"\nlayers = "many"\n', "layers must be a whole number"),
    ('[cluster]\npreset = "dgx-a100-80gb"\nnodes = 0\n', "nodes must be at least 1, got 0"),
    ('[cluster]\npreset = "tpu"\n', "unknown cluster preset 'tpu'"),
    ("global_batch = -1\n", "global batch must be at least 1"),
    ("[model\n", "not TOML"),
    ("batch = 3\n", "unknown key 'batch'"),
])
def test_spec_file_mistakes_are_one_line_naming_the_file(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_spec(path)
    line = _one_line(error)
    assert str(path) in line and words in line


def test_the_grids_the_planner_offers_are_the_ones_its_search_accepts():
    # The Planner page asks valid_grids for its sliders: it must agree with what plan tries.
    model, cluster = PRESET_MODELS["megatron-1.7b"], PRESET_CLUSTERS["dgx-a100-80gb"]
    cluster = cluster.with_nodes(4)
    result = plan(model, cluster, 512, max_candidates=1)
    by_rule = {e.grid for e in result.excluded if grid_problem(model, cluster, 512, *e.grid)}
    assert by_rule and set(valid_grids(model, cluster, 512)) == set(result.grids()) - by_rule
    # Without a batch only the batch's own rule is left out: 500 sequences split into 1, 2, 4.
    assert {dp for _, _, dp in valid_grids(model, cluster, 500)} == {1, 2, 4}
    assert len(valid_grids(model, cluster)) > len(valid_grids(model, cluster, 500))
    assert microbatch_options(512, 4) == [1, 2, 4, 8] and microbatch_options(500, 32) == []


def test_the_chunks_offered_split_the_layers_evenly():
    model = PRESET_MODELS["megatron-1.7b"]  # 24 layers
    assert chunk_options(model, 2) == [2, 3, 4, 6]
    assert chunk_options(model, 1) == []  # interleaving needs two ranks at least
