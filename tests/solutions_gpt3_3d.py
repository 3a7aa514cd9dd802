"""Reference answers of exercise ``gpt3-3d`` (lesson 9), from the lesson's closed forms.

Written from the lesson text, not from the planner the checker runs: 16 bytes per parameter
(bf16 weights and gradients, Adam's fp32 master weights and two moments), Megatron's split of
a layer's 12h^2 + 13h parameters (layer norms and two biases replicated, the rest 1/t), the
embeddings on the first rank (and the tied copy on the last), Korthikanti et al.'s activations
per layer with sequence parallelism (34 sbh/t selective, 2 sbh/t full), 1F1B holding
min(p - r, m) microbatches on rank r, the embedding's 1-byte dropout mask on the first rank,
the final norm, output-layer input and fp32 logits on the last.
"""

from __future__ import annotations

GIB = 2**30
BYTES_PER_PARAMETER = 2 + 2 + 12
E = 2  # bf16


def rank_parameters(n: dict, pp: int, tp: int, rank: int) -> int:
    """Parameters one GPU of pipeline rank ``rank`` holds."""
    L, h, s, V = n["layers"], n["hidden"], n["seq_len"], n["vocab"]
    params = (L // pp) * (6 * h + (12 * h * h + 7 * h) // tp)
    if rank == 0:
        params += V * h // tp + s * h
    if rank == pp - 1:
        params += 2 * h + (V * h // tp if pp > 1 else 0)
    return params


def rank_activations(n: dict, pp: int, tp: int, dp: int, b: int, rank: int) -> float:
    """Bytes of activations one GPU of pipeline rank ``rank`` holds at its peak (1F1B, SP)."""
    L, h, s, V = n["layers"], n["hidden"], n["seq_len"], n["vocab"]
    m = n["batch"] // (dp * b)
    sbh = s * b * h
    per_layer = (34 if n["recompute"] == "selective" else 2) * sbh / tp
    activations = min(pp - rank, m) * (L // pp) * per_layer
    if rank == 0:
        activations += min(pp, m) * sbh / tp
    if rank == pp - 1:
        activations += min(1, m) * (2 * E * sbh / tp + 4 * s * b * V / tp)
    return activations


def rank_memory(n: dict, pp: int, tp: int, dp: int, b: int, rank: int) -> float:
    """Bytes one GPU of pipeline rank ``rank`` needs at its peak (1F1B, SP)."""
    return (rank_parameters(n, pp, tp, rank) * BYTES_PER_PARAMETER
            + rank_activations(n, pp, tp, dp, b, rank))


def peak(n: dict, pp: int, tp: int, dp: int, b: int) -> float:
    return max(rank_memory(n, pp, tp, dp, b, r) for r in {0, pp - 1})


def feasible_layouts(n: dict):
    """(peak bytes, pp, tp, dp, b) of every layout that follows the rules and fits."""
    gpus = n["gpus"]
    for pp in range(1, n["layers"] + 1):
        for tp in (1, 2, 4, 8):
            if n["layers"] % pp or gpus % (pp * tp) or n["heads"] % tp:
                continue
            dp = gpus // (pp * tp)
            for b in (1, 2, 4, 8):
                if n["batch"] % dp or (n["batch"] // dp) % b:
                    continue
                need = peak(n, pp, tp, dp, b)
                if need <= n["memory_gib"] * GIB:
                    yield need, pp, tp, dp, b


def right_answers(n: dict) -> dict[str, str]:
    a = rank_memory(n, n["a_pp"], n["a_tp"], n["a_dp"], n["a_b"], n["a_rank"]) / GIB
    _, pp, tp, dp, b = min(feasible_layouts(n))
    all_reduces = 16 if n["form_b"] == "selective" else 24  # full recompute reruns F's two
    return {"a": f"{a:.3f}", "b": f"{all_reduces}*m*L*(t-1)*b*s*h/(p*t)",
            "c": "deeper-pipeline", "d": f"pp={pp} tp={tp} dp={dp} b={b}"}


def wrong_answers(n: dict) -> dict[str, list[str]]:
    """Usual mistakes of each part, from the lesson: rank 0's memory without Adam's states,
    without the activations, in GB; the tensor-parallel bytes without the ring's share, for
    every layer, for one microbatch, with two all-reduces; layouts that use other GPUs, cross
    a node or do not fit."""
    pp, tp, dp, b, r = n["a_pp"], n["a_tp"], n["a_dp"], n["a_b"], n["a_rank"]
    total = rank_memory(n, pp, tp, dp, b, r)
    states = rank_parameters(n, pp, tp, r) * BYTES_PER_PARAMETER
    no_adam = total - rank_parameters(n, pp, tp, r) * 12
    first = rank_memory(n, pp, tp, dp, b, 0)
    gpus = n["gpus"]
    k = 16 if n["form_b"] == "selective" else 24
    return {
        "a": [f"{no_adam / GIB:.3f}", f"{states / GIB:.3f}", f"{total / 1e9:.3f}",
              f"{first / GIB:.3f}"],
        "b": [f"{k // 2}*m*L*b*s*h/p", f"{k}*m*L*(t-1)*b*s*h/t", f"{k}*L*(t-1)*b*s*h/(p*t)",
              f"{k // 2}*m*L*(t-1)*b*s*h/(p*t)", f"{40 - k}*m*L*(t-1)*b*s*h/(p*t)"],
        "c": ["wider-tensor-parallel", "more-replicas", "bigger-microbatch"],
        "d": [f"pp=1 tp=8 dp={gpus // 8} b=1", f"pp=1 tp=16 dp={gpus // 16} b=1",
              f"pp=1 tp=1 dp={2 * gpus} b=1"],
    }


# What a learner types into the notebook's answer cell (``mine`` holds their numbers).
NOTEBOOK_CELL = '''
GIB = 2**30


def rank_memory(n, pp, tp, dp, b, rank):
    """Bytes one GPU of pipeline rank `rank` holds at its peak under 1F1B."""
    L, h, s, V = n["layers"], n["hidden"], n["seq_len"], n["vocab"]
    m = n["batch"] // (dp * b)
    params = (L // pp) * (6 * h + (12 * h * h + 7 * h) // tp)
    if rank == 0:
        params += V * h // tp + s * h
    if rank == pp - 1:
        params += 2 * h + (V * h // tp if pp > 1 else 0)
    sbh = s * b * h
    per_layer = (34 if n["recompute"] == "selective" else 2) * sbh / tp
    held = min(pp - rank, m) * (L // pp) * per_layer
    if rank == 0:
        held += min(pp, m) * sbh / tp
    if rank == pp - 1:
        held += 2 * 2 * sbh / tp + 4 * s * b * V / tp
    return 16 * params + held


def tp_bytes_per_gpu(m, L, p, s, b, h, t):
    # 4 all-reduces per layer and microbatch, 6 where full recomputation reruns the forward
    all_reduces = 4 if mine["form_b"] == "selective" else 6
    return all_reduces * m * (L / p) * 2 * (t - 1) / t * b * s * h * 2


def a_layout_that_fits(n):
    best = None
    for pp in range(1, n["layers"] + 1):
        for tp in (1, 2, 4, 8):
            if n["layers"] % pp or n["gpus"] % (pp * tp) or n["heads"] % tp:
                continue
            dp = n["gpus"] // (pp * tp)
            for b in (1, 2, 4, 8):
                if n["batch"] % dp or (n["batch"] // dp) % b:
                    continue
                need = max(rank_memory(n, pp, tp, dp, b, r) for r in {0, pp - 1})
                if need <= n["memory_gib"] * GIB and (best is None or need < best[0]):
                    best = (need, {"pp": pp, "tp": tp, "dp": dp, "b": b})
    return best[1]


answers = {
    "a": rank_memory(mine, mine["a_pp"], mine["a_tp"], mine["a_dp"], mine["a_b"],
                     mine["a_rank"]) / GIB,
    "b": tp_bytes_per_gpu,
    "c": "deeper-pipeline",
    "d": a_layout_that_fits(mine),
}
'''
