"""FLOPs of a training step, and the per-stage durations the simulator runs them at.

What it teaches: at GPT-3 scale a stage's forward is a FLOP count over a sustained FLOP/s,
plus the tensor-parallel all-reduces that sit inside it. Counting only the matrix multiplies
(Narayanan et al., SC 2021, arXiv:2104.04473, Appendix; Korthikanti et al. 2022,
arXiv:2205.05198, Appendix A), one layer's forward for a microbatch of b sequences is

    matmuls   8 b s h^2 + 4 b s h f   (QKV 6bsh^2, projection 2bsh^2, MLP 4bshf; f = 4h: 24bsh^2)
    attention 4 b s^2 h               (Q K^T and attention over V)

and the logit layer 2 b s h V. A backward costs twice its forward: the input gradient (one
forward's worth of matmuls and both attention products) and the weight gradient (one
forward's worth of matmuls). Recomputation adds a forward's attention (selective) or a whole
forward with its all-reduces (full). With f = 4h, a step of B sequences is then

    model FLOPs      72 B L s h^2 (1 + s/(6h) + V/(12hL))   Korthikanti eq. (7)
    full recompute   96 B L s h^2 (1 + s/(6h) + V/(16hL))   Narayanan eq. (3)

    python -c "from pplab.planner import PRESET_MODELS as M; from pplab.planner.flops import *;
    print(model_flops(M['gpt3-175b'], 1536) / 1e18, 'EFLOP per step')"
"""

from __future__ import annotations

from dataclasses import dataclass

from pplab.formulas.parallel import ring_wire_bytes
from pplab.planner.specs import ClusterSpec, ModelSpec

RECOMPUTE = ("none", "selective", "full")


def check_recompute(recompute: str) -> str:
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute {recompute!r} is not one of {', '.join(RECOMPUTE)}")
    return recompute


def layer_matmul_flops(model: ModelSpec, sequences: int = 1) -> float:
    """Forward FLOPs of one layer's weight matmuls: 8 b s h^2 + 4 b s h f."""
    b, s, h = sequences, model.seq_len, model.hidden
    return 8.0 * b * s * h * h + 4.0 * b * s * h * model.ffn_size


def layer_attention_flops(model: ModelSpec, sequences: int = 1) -> float:
    """Forward FLOPs of one layer's Q K^T and attention over V: 4 b s^2 h."""
    return 4.0 * sequences * model.seq_len ** 2 * model.hidden


def logits_flops(model: ModelSpec, sequences: int = 1) -> float:
    """Forward FLOPs of the logit layer: 2 b s h V."""
    return 2.0 * sequences * model.seq_len * model.hidden * model.vocab


def recompute_flops(model: ModelSpec, recompute: str, sequences: int = 1) -> float:
    """Forward FLOPs one layer runs again before its backward."""
    check_recompute(recompute)
    if recompute == "none":
        return 0.0
    attention = layer_attention_flops(model, sequences)
    if recompute == "selective":  # the attention core (Korthikanti Sec. 5, eq. (8))
        return attention
    return layer_matmul_flops(model, sequences) + attention


def model_flops(model: ModelSpec, global_batch: int) -> float:
    """FLOPs of one step, forward and backward, no recomputation: the MFU numerator."""
    forward = model.layers * (layer_matmul_flops(model) + layer_attention_flops(model)) \
        + logits_flops(model)
    return 3.0 * forward * global_batch


def hardware_flops(model: ModelSpec, global_batch: int, recompute: str) -> float:
    """FLOPs one step executes, recomputation included: the HFU numerator.

    With full recomputation and f = 4h this is exactly Megatron-LM's eq. (3), the count
    behind its Table 1's "achieved teraFLOP/s per GPU".
    """
    extra = model.layers * recompute_flops(model, recompute) * global_batch
    return model_flops(model, global_batch) + extra


def narayanan_eq3(model: ModelSpec, global_batch: int) -> float:
    """Narayanan et al. eq. (3), as printed: 96 B s l h^2 (1 + s/(6h) + V/(16 l h))."""
    B, s, l, h, V = global_batch, model.seq_len, model.layers, model.hidden, model.vocab
    return 96.0 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))


def korthikanti_eq7(model: ModelSpec, global_batch: int) -> float:
    """Korthikanti et al. eq. (7), model FLOPs: 72 B L s h^2 (1 + s/(6h) + V/(12hL))."""
    B, s, L, h, V = global_batch, model.seq_len, model.layers, model.hidden, model.vocab
    return 72.0 * B * L * s * h * h * (1 + s / (6 * h) + V / (12 * h * L))


@dataclass(frozen=True)
class LayerTimes:
    """Seconds one layer takes on one GPU for one microbatch, split the way time is spent.

    ``forward`` and the backward halves include the tensor-parallel all-reduces that run
    inside them (``tp_forward``, ``tp_backward``); ``recompute`` is the extra forward work
    (with its own all-reduces under full recomputation), run at the head of the backward.
    """

    forward: float
    recompute: float
    backward_input: float
    backward_weight: float
    tp_forward: float
    tp_backward: float
    tp_recompute: float

    @property
    def backward(self) -> float:
        return self.recompute + self.backward_input + self.backward_weight

    @property
    def total(self) -> float:
        return self.forward + self.backward

    @property
    def tp_comm(self) -> float:
        """All-reduce seconds in forward and backward, recomputation's excluded."""
        return self.tp_forward + self.tp_backward


def tp_allreduce_seconds(model: ModelSpec, cluster: ClusterSpec, microbatch_size: int,
                         tp: int) -> float:
    """One all-reduce of a layer's output (b s h elements) over tp GPUs inside a node.

    A ring moves 2 (t-1)/t of the payload over each GPU's NVLink (Patarasuk and Yuan 2009).
    With sequence parallelism it is a reduce-scatter and an all-gather instead: the same
    bytes (Korthikanti Sec. 4.2.2), so the same time.
    """
    payload = microbatch_size * model.seq_len * model.hidden * model.element_bytes
    return ring_wire_bytes(payload, tp) / cluster.intra_bandwidth


def layer_times(model: ModelSpec, cluster: ClusterSpec, microbatch_size: int, tp: int,
                recompute: str) -> LayerTimes:
    """Per-layer durations on one GPU of a tp group, for one microbatch.

    Megatron's tensor parallelism runs two all-reduces in each forward (after the attention
    projection and after the MLP) and two in each backward (Shoeybi et al. 2019, Sec. 3);
    they sit on the critical path, so their time adds. Full recomputation reruns the forward
    with its two all-reduces.
    """
    rate = cluster.sustained_flops * tp
    matmul = layer_matmul_flops(model, microbatch_size) / rate
    attention = layer_attention_flops(model, microbatch_size) / rate
    allreduce = tp_allreduce_seconds(model, cluster, microbatch_size, tp)
    tp_recompute = 2 * allreduce if recompute == "full" else 0.0
    return LayerTimes(
        forward=matmul + attention + 2 * allreduce,
        recompute=recompute_flops(model, recompute, microbatch_size) / rate + tp_recompute,
        backward_input=matmul + 2 * attention + 2 * allreduce,
        backward_weight=matmul,
        tp_forward=2 * allreduce,
        tp_backward=2 * allreduce,
        tp_recompute=tp_recompute,
    )


def logits_seconds(model: ModelSpec, cluster: ClusterSpec, microbatch_size: int,
                   tp: int) -> float:
    """Forward seconds of the vocabulary-parallel logit layer; its backward takes twice."""
    return logits_flops(model, microbatch_size) / (cluster.sustained_flops * tp)
