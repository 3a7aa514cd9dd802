"""Exercise ``gpt3-3d`` (lesson 9): a pp x tp x dp layout at GPT-3 scale, judged by the planner.

Each learner gets a model, 8-GPU nodes, a memory per GPU, a global batch and a recomputation.
(a) The memory of a middle pipeline rank under a given layout, in GiB (``pplab plan`` prints
only the fullest rank's); (b) the tensor-parallel bytes one GPU sends per step, as a formula
checked at fresh sizes, under selective or full recomputation (drawn per learner); (c) which
one change makes another layout fit; (d) a feasible layout of their own cluster.
``pplab.planner`` judges every part at check time (``pplab.exercises.gpt3_layouts``); feedback
names the rule or the memory that fails, never a layout that works.

    pplab exercise show gpt3-3d --learner ada
    pplab exercise check gpt3-3d --learner ada d="pp=16 tp=8 dp=16 b=1"
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from pplab.exercises.core import Exercise, Variant, register, right, wrong
from pplab.exercises.gpt3_layouts import (
    NODE,
    LayoutPart,
    cluster_of,
    layout_of,
    valid_layouts,
)
from pplab.exercises.judging import judge_formula
from pplab.exercises.parts import ChoicePart, Form, FormulaPart, NumberPart
from pplab.planner import PRESET_MODELS, ClusterSpec, ModelSpec
from pplab.planner.specs import GB, GIB

MODELS = ("gpt3-175b", "gpt3-175b", "megatron-145.6b", "megatron-310.1b", "megatron-76.1b")
MEMORY_GIB = (24, 32, 40, 48, 64, 80)
NODES = (16, 32, 48, 64, 96, 128, 256)
BATCHES = (512, 768, 1024, 1536, 2048)
RECOMPUTE = ("selective", "full")
RELATIVE_TOLERANCE = 0.0025  # part (a): every term the lesson lists, small ones rounded
_FRESH_POINTS = 8
_FORMULA_VARIABLES = ("m", "L", "p", "s", "b", "h", "t")


def _draw_other_cluster(rng: random.Random, n: dict) -> dict | None:
    """Part (c): a layout with tp = 8 that does not fit, where twice the depth does."""
    nodes = rng.choice([x for x in NODES if x != n["nodes"]])
    memory = rng.choice(MEMORY_GIB)
    fits = {(pp, tp, dp, b): peak <= memory for pp, tp, dp, b, peak in
            valid_layouts(n["model"], nodes, memory, n["batch"], n["recompute"])}
    options = [(pp, dp) for (pp, tp, dp, b), ok in fits.items()
               if tp == 8 and b == 1 and not ok and dp % 2 == 0
               and fits.get((2 * pp, 8, dp // 2, 1)) and (pp, 8, dp, 2) in fits]
    if not options:
        return None
    pp, dp = rng.choice(sorted(options))
    return dict(c_nodes=nodes, c_gpus=8 * nodes, c_memory_gib=memory, c_pp=pp, c_dp=dp,
                c_m=n["batch"] // dp, c_pp2=2 * pp, c_dp_half=dp // 2, c_dp2=2 * dp,
                c_gpus2=16 * nodes, c_batch2=2 * n["batch"])


def _draw(rng: random.Random) -> dict:
    while True:
        name = rng.choice(MODELS)
        model = PRESET_MODELS[name]
        n = dict(model=name, model_text=model.describe(), layers=model.layers,
                 hidden=model.hidden, heads=model.heads, seq_len=model.seq_len,
                 vocab=model.vocab, gpus_per_node=NODE.gpus_per_node,
                 nodes=rng.choice(NODES), memory_gib=rng.choice(MEMORY_GIB),
                 batch=rng.choice(BATCHES), recompute=rng.choice(RECOMPUTE))
        n["gpus"] = n["gpus_per_node"] * n["nodes"]
        layouts = valid_layouts(name, n["nodes"], n["memory_gib"], n["batch"], n["recompute"])
        fitting = [x for x in layouts if x[4] <= n["memory_gib"]]
        # Some layouts fit, most do not: the learner has to reason, not pick at random.
        if not fitting or len(fitting) > len(layouts) / 2:
            continue
        given = [x for x in layouts if x[4] > n["memory_gib"] and x[0] >= 3 and x[1] >= 2
                 and x[4] <= min(150, 2 * n["memory_gib"])]
        other = _draw_other_cluster(rng, n)
        if not given or other is None:
            continue
        pp, tp, dp, b, _ = rng.choice(given)
        return n | dict(a_pp=pp, a_tp=tp, a_dp=dp, a_b=b, a_m=n["batch"] // (dp * b),
                        a_rank=rng.randint(1, pp - 2),
                        form_b=rng.choice(("selective", "full"))) | other


def _specs(v: Variant) -> tuple[ModelSpec, ClusterSpec]:
    return PRESET_MODELS[v["model"]], cluster_of(v["nodes"], v["memory_gib"])


# ---- (a) the memory of a given layout ----------------------------------------------------

def _close(x: float, y: float) -> bool:
    return abs(x - y) <= RELATIVE_TOLERANCE * abs(y)


def judge_memory(v: Variant, answer) -> object:
    model, cluster = _specs(v)
    layout, rank = (v["a_pp"], v["a_tp"], v["a_dp"], v["a_b"]), v["a_rank"]
    estimate = layout_of(model, cluster, v["batch"], v["recompute"], *layout)
    stage, given = estimate.memory[rank], float(answer)
    truth = stage.total / GIB
    if _close(given, truth):
        return right(f"right: pipeline rank {rank} holds {stage.model_states / GIB:.2f} GiB of "
                     f"weights, gradients and Adam states and {stage.activations / GIB:.2f} "
                     f"GiB of activations ({stage.in_flight} microbatches in flight), "
                     f"{truth:.2f} GiB in all (predicted by the planner)")
    one = stage.activations / stage.in_flight
    without_sp = layout_of(model, cluster, v["batch"], v["recompute"], *layout,
                           sequence_parallel=False).memory[rank].total
    gpipe = layout_of(model, cluster, v["batch"], v["recompute"], *layout,
                      schedule="gpipe").memory[rank].total
    first = estimate.memory[0]
    mistakes = [
        (stage.total - stage.optimizer, "you left out Adam's states: mixed precision keeps 12 "
                                        "more bytes per parameter (fp32 weights, two moments)"),
        (stage.model_states, "that is the weights, gradients and optimizer states only: add "
                             "the activations this rank holds at its peak"),
        (stage.model_states + one, "that counts one microbatch's activations: at its peak a "
                                   "1F1B rank holds more"),
        (stage.model_states + one * min(v["a_pp"], v["a_m"]),
         "that counts the microbatches rank 0 holds in flight; a later rank starts fewer "
         "forwards before its first backward"),
        (first.total, "that is pipeline rank 0's memory (the fullest, which pplab plan "
                      "prints): the question asks about another rank"),
        (stage.total * GIB / GB, "that is in GB (10^9 bytes); give GiB (2^30 bytes)"),
        (without_sp, "that is without sequence parallelism; this layout also splits along the "
                     "sequence the activations tensor parallelism leaves whole"),
        (gpipe, "that is GPipe's peak, with every microbatch held; this pipeline runs 1F1B"),
    ]
    for value, message in mistakes:
        if _close(given * GIB, value):
            return wrong(message)
    return wrong(f"add up the weights, gradients, optimizer states and activations of "
                 f"pipeline rank {rank}, as the lesson counts them",
                 hint=f"{given:g} GiB is too {'high' if given > truth else 'low'}")


# ---- (b) the tensor-parallel bytes per GPU, as a formula ----------------------------------

def tp_bytes_planned(point: Mapping, recompute: str = "selective") -> float:
    """The planner's tensor-parallel bytes per GPU per step at ``point``."""
    m, layers, p, s, b, h, t = (int(point[k]) for k in _FORMULA_VARIABLES)
    model = ModelSpec("fresh", layers, h, 8, s, 51_200)
    gpus = max(8, p * t)
    dp = gpus // (p * t)
    estimate = layout_of(model, cluster_of(gpus // 8, 80), m * b * dp, recompute,
                         p, t, dp, b)
    return float(estimate.traffic.tp_bytes)


def _fresh_points(v: Variant) -> list[dict]:
    rng = v.rng("formula")
    points = []
    for n in range(_FRESH_POINTS):
        p = rng.choice((1, 2, 4, 8, 16))
        t = 1 if n == 0 else rng.choice((2, 4, 8))
        points.append({"m": rng.randint(1, 64), "L": p * rng.randint(1, 12), "p": p,
                       "s": rng.choice((512, 1024, 2048, 4096)), "b": rng.choice((1, 2, 4)),
                       "h": 128 * rng.randint(8, 128), "t": t})
    return points  # the one without tensor parallelism first: the message shows the last


def judge_tp_bytes(v: Variant, function) -> object:
    full = v["form_b"] == "full"
    # the all-reduces of one layer's forward and backward: 2 + 2, and 2 more where full
    # recomputation runs the forward again; a ring sends 2(t-1)/t of each from every GPU
    right, other = (24, 16) if full else (16, 24)
    wrong_kind = ("that leaves out full recomputation's second forward: it runs the forward's "
                  "two all-reduces again" if full else
                  "that counts full recomputation's second forward; the question is about "
                  "selective recomputation, which reruns no all-reduce")
    return judge_formula(
        function, _FORMULA_VARIABLES, _fresh_points(v),
        truth=lambda point: tp_bytes_planned(point, "full" if full else "selective"),
        misconceptions=[
            (lambda m, L, p, s, b, h, t: right / 2 * m * L * b * s * h / p,
             "you counted each all-reduce's payload once; in a ring every GPU sends a share "
             "of it that depends on t"),
            (lambda m, L, p, s, b, h, t: right * m * L * (t - 1) * b * s * h / t,
             "that is every layer of the model; one GPU runs only its pipeline rank's layers"),
            (lambda m, L, p, s, b, h, t: right * L * (t - 1) * b * s * h / (p * t),
             "that is one microbatch; a step runs m of them"),
            (lambda m, L, p, s, b, h, t: right / 2 * m * L * (t - 1) * b * s * h / (p * t),
             "half the bytes: check how many all-reduces a layer runs per microbatch, and "
             "what share of its payload a ring all-reduce sends from each GPU"),
            (lambda m, L, p, s, b, h, t: other * m * L * (t - 1) * b * s * h / (p * t),
             wrong_kind),
        ], source="the planner", verb="counts", unit="bytes")


# ---- (c) which degree to raise -----------------------------------------------------------

def _options(v: Variant) -> dict[str, object]:
    """What the planner says about each change of part (c): an estimate, or a broken rule."""
    model = PRESET_MODELS[v["model"]]
    here = cluster_of(v["c_nodes"], v["c_memory_gib"])
    twice = cluster_of(2 * v["c_nodes"], v["c_memory_gib"])
    batch, recompute, pp, dp = v["batch"], v["recompute"], v["c_pp"], v["c_dp"]
    return {"deeper-pipeline": layout_of(model, here, batch, recompute, 2 * pp, 8, dp // 2, 1),
            "wider-tensor-parallel": layout_of(model, here, batch, recompute, pp, 16, dp // 2,
                                               1),
            "more-replicas": layout_of(model, twice, 2 * batch, recompute, pp, 8, 2 * dp, 1),
            "bigger-microbatch": layout_of(model, here, batch, recompute, pp, 8, dp, 2)}


def _peak(estimate) -> str:
    return f"{estimate.peak_memory / GIB:.1f} GiB"


def judge_raise(v: Variant, choice: str) -> object:
    options = _options(v)
    fitting = [name for name, e in options.items() if not isinstance(e, str) and e.fits]
    if choice in fitting:
        said = "; ".join(f"{name}: {e if isinstance(e, str) else _peak(e)}"
                         for name, e in options.items() if name != choice)
        return right(f"right: the fullest GPU then needs {_peak(options[choice])} <= "
                     f"{v['c_memory_gib']} GiB (predicted by the planner); the others: {said}")
    chosen = options[choice]
    if isinstance(chosen, str):
        return wrong(f"that layout breaks a rule: {chosen}")
    if choice == "more-replicas":
        return wrong(f"each replica still holds its pipeline rank's whole share, so the memory "
                     f"per GPU stays {_peak(chosen)}: data parallelism copies, it does not split")
    return wrong(f"each microbatch held is twice as big: the fullest GPU would need "
                 f"{_peak(chosen)}")


# ---- (d) a feasible layout of the learner's own cluster ----------------------------------

def judge_layout(v: Variant, layout: tuple[int, int, int, int]) -> object:
    pp, tp, dp, b = layout
    model, cluster = _specs(v)
    if pp * tp * dp != cluster.num_gpus:
        return wrong(f"pp x tp x dp = {pp} x {tp} x {dp} = {pp * tp * dp} GPUs, but you have "
                     f"{cluster.num_gpus}: every GPU holds one share of one replica")
    estimate = layout_of(model, cluster, v["batch"], v["recompute"], pp, tp, dp, b)
    if isinstance(estimate, str):
        return wrong(f"that layout breaks a rule: {estimate}")
    stage = max(estimate.memory, key=lambda s: s.total)
    if not estimate.fits:
        return wrong(f"it does not fit: pipeline rank {stage.rank} needs "
                     f"{stage.total / GIB:.1f} GiB > {v['memory_gib']} GiB, of which "
                     f"{stage.model_states / GIB:.1f} GiB weights, gradients and optimizer "
                     f"states and {stage.activations / GIB:.1f} GiB activations (predicted)",
                     hint="the model states shrink as tp x pp grows; 1F1B's first rank's "
                          "activations shrink with tp and with a smaller b, not with pp")
    timed = layout_of(model, cluster, v["batch"], v["recompute"], pp, tp, dp, b, timed=True)
    return right(f"right: pp={pp} tp={tp} dp={dp} b={b} uses all {cluster.num_gpus} GPUs with "
                 f"tp inside a node, and its fullest GPU (pipeline rank {stage.rank}) needs "
                 f"{stage.total / GIB:.1f} GiB <= {v['memory_gib']} GiB; with m = "
                 f"{estimate.layout.num_microbatches} its simulated 1F1B step leaves a bubble of "
                 f"{timed.bubble_fraction:.1%} (messages and all-reduces included; "
                 f"{timed.bubble_closed_form:.1%} for equal stages and free messages), as pplab "
                 f"plan prints them (predicted by the planner)")


EXERCISE = register(Exercise(
    id="gpt3-3d", title="Lesson 9: 3D parallelism at GPT-3 scale",
    lesson="09-3d-parallelism-at-gpt-3-scale",
    intro="Your model: {model_text}. Your cluster: {nodes} nodes of {gpus_per_node} GPUs = "
          "{gpus} GPUs of {memory_gib} GiB each (NVLink inside a node, InfiniBand between). "
          "Every step trains {batch} sequences with 1F1B, bf16 mixed precision and Adam, "
          "sequence parallelism and {recompute} recomputation. A layout is feasible when "
          "pp x tp x dp uses every GPU, tp stays inside a node and divides the heads, pp "
          "divides the layers, the batch splits into dp replicas of whole microbatches of b "
          "sequences, and the fullest GPU fits in its memory.",
    draw=_draw,
    parts=(
        NumberPart("a", "With pp = {a_pp}, tp = {a_tp}, dp = {a_dp} and microbatches of "
                        "b = {a_b} (m = {a_m} per pipeline), how much memory does one GPU of "
                        "pipeline rank {a_rank} (ranks count from 0) need at its peak, in GiB "
                        "(2^30 bytes)? Count the weights, gradients, optimizer states and "
                        "activations.",
                   judge_memory, unit="GiB", low=0, high=10**6),
        FormulaPart("b", "", judge_tp_bytes, variables=_FORMULA_VARIABLES, forms=tuple(
            Form(kind, "Write the bytes one GPU sends per step in its tensor-parallel "
                       f"all-reduces (ring all-reduces, bf16 activations, {kind} "
                       "recomputation) as a formula in m (microbatches per pipeline), L "
                       "(layers), p (pp), s, b, h and t (tp). It is checked against the "
                       "planner at sizes you have not seen.", _FORMULA_VARIABLES)
            for kind in ("selective", "full"))),
        ChoicePart("c", "On another cluster of {c_gpus} GPUs of {c_memory_gib} GiB, the same "
                        "model and batch with pp = {c_pp}, tp = 8, dp = {c_dp}, b = 1 does not "
                        "fit. Which one change makes it fit?",
                   judge_raise, options=(
                       ("deeper-pipeline", "pp = {c_pp2} and dp = {c_dp_half}, on the same "
                                           "GPUs"),
                       ("wider-tensor-parallel", "tp = 16 and dp = {c_dp_half}, on the same "
                                                 "GPUs"),
                       ("more-replicas", "dp = {c_dp2} on {c_gpus2} GPUs, each replica "
                                         "keeping its {c_m} sequences per step"),
                       ("bigger-microbatch", "b = 2: half as many microbatches, each twice "
                                             "as big"))),
        LayoutPart("d", "Give a feasible layout of your own cluster: pp, tp, dp and the "
                        "microbatch size b.", judge_layout),
    ),
))
