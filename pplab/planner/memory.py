"""Memory per GPU: weights, gradients, optimizer states, and the activations a schedule holds.

What it teaches: pipeline parallelism divides the weights by p but not the activations. Under
1F1B the first stage holds p microbatches of its L/p layers, L layers' worth in all, whatever
p is (Korthikanti et al. 2022, arXiv:2205.05198, Sec. 4.2.3). Per layer and microbatch, with
16-bit activations and 1-byte dropout masks (their Table 2, in bytes):

    no parallelism                   s b h (34 + 5 a s / h)
    tensor parallel t                s b h (10 + 24/t + 5 a s / (h t))
    tensor + sequence parallel       s b h / t (34 + 5 a s / h)
    selective recompute              drops the 5 a s / h term (the attention core)
    full recompute                   2 s b h (the layer's input only)

The 34 is (4e + 2) + (4e + 2e f/h) for element size e and MLP width f: 10 replicated by tensor
parallelism (layer-norm inputs, dropout masks, the inputs of the QKV and first MLP matmuls),
24 split by it; the 5 is 2e + 1 (softmax output and its dropout output, plus the mask).
Weights, gradients and Adam take 2 + 2 + 12 = 16 bytes per parameter in mixed precision
(ZeRO, Rajbhandari et al., SC 2020, arXiv:1910.02054, Sec. 3.1).

    python -c "from pplab.planner.memory import in_flight; print(in_flight('1f1b', 8, 24, 1, 0))"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pplab.formulas import pipeline as formulas
from pplab.formulas.parallel import block_parameters
from pplab.planner.flops import check_recompute
from pplab.planner.specs import GIB, ModelSpec

DROPOUT_MASK_BYTES = 1  # one byte per element, whatever the training precision
LOGITS_BYTES = 4  # the cross-entropy keeps its logits in fp32 (Korthikanti Sec. 4.3)


def layer_activation_bytes(model: ModelSpec, microbatch_size: int, tp: int, recompute: str,
                           sequence_parallel: bool) -> float:
    """Bytes one layer keeps for the backward of one microbatch on one GPU (Table 2 above).

    Full recomputation keeps only the layer's input; sequence parallelism leaves that input
    split along the sequence, 1/t on each GPU (the paper's Table 2 states the unsplit 2sbh,
    which is also what we give without sequence parallelism).
    """
    check_recompute(recompute)
    e, h = model.element_bytes, model.hidden
    sbh = float(model.seq_len) * microbatch_size * h
    replicated_divisor = tp if sequence_parallel else 1
    if recompute == "full":
        return e * sbh / replicated_divisor
    replicated = (4 * e + 2 * DROPOUT_MASK_BYTES) * sbh / replicated_divisor
    split = (4 * e + 2 * e * model.ffn_size / h) * sbh / tp
    scores = (2 * e + DROPOUT_MASK_BYTES) * model.heads * model.seq_len * sbh / (h * tp)
    return replicated + split + (scores if recompute == "none" else 0.0)


def in_flight(schedule: str, pp: int, num_microbatches: int, num_chunks: int,
              rank: int) -> int:
    """Most model chunks' activations rank ``rank`` holds at once, one microbatch each.

    * gpipe: all m forwards run before any backward.
    * 1f1b: ``min(p - r, m)``: p - 1 - r warm-up forwards and one more (PipeDream-Flush).
    * zb-h1: ``min(p, m)`` on every rank: rank r also keeps r weight gradients pending, each
      holding its activation (Qi et al., ICLR 2024, Sec. 2.1: ZB-H1's peak is 1F1B's).
    * interleaved-1f1b: Megatron's warm-up of ``2(p - r - 1) + (v - 1) p`` chunk forwards and
      one more, at most all m v (with m = p every forward comes first). On rank 0 that is
      p v + p - 1 chunks of L/(p v) layers: L (1 + (p-1)/(p v)) layers, Korthikanti's factor.

    Tests walk the registered schedules' orders and find exactly these counts.
    """
    p, m, v = pp, num_microbatches, num_chunks
    if schedule == "gpipe":
        return m
    if schedule == "1f1b":
        return min(p - rank, m)
    if schedule == "zb-h1":
        return min(p, m)
    if schedule == "interleaved-1f1b":
        total = m * v
        if m == p:
            return total
        return min(2 * (p - rank - 1) + (v - 1) * p + 1, total)
    raise ValueError(f"the planner has no activation count for schedule {schedule!r}")


def stage_parameters(model: ModelSpec, pp: int, tp: int, rank: int) -> int:
    """Parameters one GPU of pipeline rank ``rank`` holds, its 1/tp share.

    Its L/p layers (Megatron's split: layer norms and two biases replicated, the rest 1/t);
    on the first rank the vocabulary-parallel word embedding (V h / t) and the position
    embedding (s h, replicated); on the last the final layer norm and, when p > 1, its own
    copy of the word embedding for the tied output layer (Megatron keeps one on each end).
    """
    h = model.hidden
    count = (model.layers // pp) * block_parameters(h, model.ffn_size, tp)
    word_embedding = model.vocab * h // tp
    if rank == 0:
        count += word_embedding + model.seq_len * h
    if rank == pp - 1:
        count += 2 * h + (word_embedding if pp > 1 else 0)
    return count


@dataclass(frozen=True)
class StageMemory:
    """Bytes one GPU of pipeline rank ``rank`` needs at its peak, by kind."""

    rank: int
    layers: int
    parameters: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    in_flight: int  # model chunks' activations held at the peak (one microbatch each)

    @property
    def model_states(self) -> float:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.model_states + self.activations

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["total"] = self.total
        out["total_gib"] = round(self.total / GIB, 3)
        return out


def stage_memories(model: ModelSpec, pp: int, tp: int, microbatch_size: int,
                   num_microbatches: int, schedule: str, num_chunks: int, recompute: str,
                   sequence_parallel: bool) -> tuple[StageMemory, ...]:
    """The memory of every pipeline rank, in rank order (the first usually needs most).

    Besides the layers: the first stage keeps its embedding dropout mask (s b h / t with
    sequence parallelism) for each microbatch it holds, and the last keeps its final
    layer-norm and output-layer inputs and the fp32 logits (Korthikanti Sec. 4.3), all three
    outside any recomputation.
    """
    e, h, s = model.element_bytes, model.hidden, model.seq_len
    per_layer = layer_activation_bytes(model, microbatch_size, tp, recompute, sequence_parallel)
    layers_per_chunk = model.layers // (pp * num_chunks)
    divisor = tp if sequence_parallel else 1
    sbh = float(s) * microbatch_size * h
    embedding_extra = DROPOUT_MASK_BYTES * sbh / divisor
    output_extra = 2 * e * sbh / divisor + LOGITS_BYTES * s * microbatch_size * model.vocab / tp
    per_stage = formulas.peak_activations(schedule, pp, num_microbatches, num_chunks)
    out = []
    for rank in range(pp):
        held = in_flight(schedule, pp, num_microbatches, num_chunks, rank)
        activations = held * layers_per_chunk * per_layer
        if rank == 0:
            activations += per_stage[0] * embedding_extra
        if rank == pp - 1:
            activations += per_stage[pp * num_chunks - 1] * output_extra
        params = stage_parameters(model, pp, tp, rank)
        out.append(StageMemory(
            rank=rank, layers=model.layers // pp, parameters=params,
            weights=float(params * e), gradients=float(params * e),
            optimizer=float(params * model.optimizer_bytes),
            activations=activations, in_flight=held))
    return tuple(out)
