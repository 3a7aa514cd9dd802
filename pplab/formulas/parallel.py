"""Closed forms for the bytes a step moves under pipeline, tensor and data parallelism.

What it teaches: communication volume is not a timing, it is a count. For the toy GPT every
message's size follows from the shapes alone, so the engine's measured bytes must equal these
formulas exactly; ``pplab compare`` prints both side by side. All counts are *payload* bytes:
the size of the tensor each rank hands to a send or to an all-reduce. A ring all-reduce of a
payload of N bytes over n ranks puts 2 (n - 1) / n x N bytes on each rank's link
(Patarasuk and Yuan 2009, "Bandwidth optimal all-reduce algorithms"); ``ring_wire_bytes``
gives that figure when the link load is what matters.

Notation: L layers, S pipeline stages, m microbatches per step per replica, b rows per
microbatch, s sequence length, d model width, f MLP width, V vocabulary, e bytes per element,
t = tp size, r = dp size. One activation crossing a cut is b x s x d x e bytes.

* Pipeline sends (GPipe, Huang et al. 2019, arXiv:1811.06965; 1F1B, Narayanan et al. 2021,
  arXiv:2104.04473): each of the S - 1 cuts carries one activation forward and one gradient
  back per microbatch; with tp every tp rank sends the full replicated activation to its
  twin, and every dp replica runs its own pipe:
  2 (S - 1) m b s d e x t x r.
* Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, arXiv:1909.08053, Sec. 3): each
  transformer layer has two g all-reduces in the forward (after the attention output and the
  MLP output projections) and two f all-reduces in the backward (of the input gradients of
  the qkv and first MLP projections), each of one activation, b s d e, on every rank:
  4 L m b s d e x t x r summed over all ranks (0 when t = 1).
* Data parallelism (Li et al. 2020, arXiv:2006.15704): after the flush every rank all-reduces
  the gradient of every parameter it holds, once per step. Summed over all ranks that is r
  times the parameters of every tp shard of every stage: replicated tensors (embeddings,
  norms, head, the row-parallel biases) count t times, split ones once (0 when r = 1).

    python -c "from pplab.formulas.parallel import *; print(tp_allreduce_bytes(4, 8, 4, 32, 64, 2))"
"""

from __future__ import annotations

from dataclasses import dataclass


def activation_bytes(microbatch_size: int, seq_len: int, d_model: int,
                     bytes_per_element: int = 4) -> int:
    """One activation (or its gradient) crossing a cut: b x s x d x e.

    The boundary tensor of a transformer layer is its hidden state (Megatron-LM SC'21,
    Sec. 3.2, counts b s h elements per message).
    """
    for name, value in (("microbatch_size", microbatch_size), ("seq_len", seq_len),
                        ("d_model", d_model), ("bytes_per_element", bytes_per_element)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return microbatch_size * seq_len * d_model * bytes_per_element


def pipeline_send_bytes(num_stages: int, num_microbatches: int, microbatch_size: int,
                        seq_len: int, d_model: int, tp_size: int = 1, dp_size: int = 1,
                        bytes_per_element: int = 4) -> int:
    """Bytes of all pipeline sends of one step, all ranks: 2 (S-1) m b s d e t r.

    S counts model stages, P x V: interleaving multiplies the messages by V (Megatron-LM
    SC'21, Sec. 2.2.2).
    """
    if num_stages < 1 or num_microbatches < 1:
        raise ValueError(f"need at least 1 stage and 1 microbatch, got {num_stages} stages "
                         f"and {num_microbatches} microbatches")
    one = activation_bytes(microbatch_size, seq_len, d_model, bytes_per_element)
    return 2 * (num_stages - 1) * num_microbatches * one * tp_size * dp_size


def tp_allreduce_bytes(n_layers: int, num_microbatches: int, microbatch_size: int,
                       seq_len: int, d_model: int, tp_size: int, dp_size: int = 1,
                       bytes_per_element: int = 4, backward_passes: int = 1) -> int:
    """Payload bytes of the Megatron f and g all-reduces of one step, all ranks: 4 L m b s d e t r.

    ``backward_passes`` is how many times a backward runs through the layers' f operators
    per microbatch: 1 for a full backward B. A split backward runs them in I (the input
    gradient passes every f) and again in W when W, as in pplab's engine, reruns the graph
    restricted to the weights (every f leads to a LayerNorm weight): 2, except on the first
    stage, whose I has no input to differentiate: 1. Then the count is (2 + 2 x passes) per
    layer per microbatch instead of 4.
    """
    if tp_size == 1:
        return 0
    one = activation_bytes(microbatch_size, seq_len, d_model, bytes_per_element)
    return (2 + 2 * backward_passes) * n_layers * num_microbatches * one * tp_size * dp_size


def block_parameters(d_model: int, d_ff: int, tp_size: int = 1) -> int:
    """Parameters of one block held by one tp rank (Megatron split, biases included).

    ln1, ln2: 2d each, replicated; qkv: (3d x d + 3d) / t; attention proj: d x d / t + d (bias
    replicated); fc: (d x f + f) / t; MLP proj: f x d / t + d.
    """
    d, f, t = d_model, d_ff, tp_size
    split = (3 * d * d + 3 * d) + d * d + (d * f + f) + f * d
    return 4 * d + 2 * d + split // t


def stage_parameters(n_layers_in_stage: int, d_model: int, d_ff: int, vocab_size: int,
                     seq_len: int, first: bool, last: bool, tp_size: int = 1) -> int:
    """Parameters one tp rank of a stage holds: its blocks, plus embeddings or norm and head."""
    count = n_layers_in_stage * block_parameters(d_model, d_ff, tp_size)
    if first:
        count += vocab_size * d_model + seq_len * d_model
    if last:
        count += 2 * d_model + d_model * vocab_size + vocab_size
    return count


def dp_allreduce_bytes(layer_split: tuple[int, ...] | list[int], d_model: int, d_ff: int,
                       vocab_size: int, seq_len: int, tp_size: int = 1, dp_size: int = 1,
                       bytes_per_element: int = 4) -> int:
    """Payload bytes of the gradient all-reduces of one step, all ranks (0 when dp is 1)."""
    if dp_size == 1:
        return 0
    last = len(layer_split) - 1
    per_replica = sum(
        stage_parameters(n, d_model, d_ff, vocab_size, seq_len, i == 0, i == last, tp_size)
        for i, n in enumerate(layer_split)
    )
    return per_replica * tp_size * dp_size * bytes_per_element


def ring_wire_bytes(payload: int, num_ranks: int) -> int:
    """Bytes one rank sends in a ring all-reduce of ``payload`` bytes: 2 (n-1)/n x payload."""
    if num_ranks < 2:
        return 0
    return 2 * (num_ranks - 1) * payload // num_ranks


# ---- time on the wire: the alpha-beta model -----------------------------------------------
# A message of N bytes over a link of latency a (seconds) and bandwidth w (bytes per second)
# takes a + N / w (Hockney's model). A ring all-reduce runs 2 (n - 1) steps (a reduce-scatter,
# then an all-gather), each sending N / n bytes to the next rank, all ranks at once; the
# ring is as fast as its slowest link. That is 2 (n - 1) a + 2 (n - 1) / n x N / w, the
# bandwidth term the NCCL tests' PERFORMANCE.md derives for any all-reduce built of sends.

def send_seconds(nbytes: float, bandwidth: float, latency: float) -> float:
    """One point-to-point message: latency + bytes / bandwidth (bytes per second)."""
    _check_link(bandwidth, latency)
    return latency + nbytes / bandwidth


def ring_allreduce_seconds(payload: float, num_ranks: int, bandwidth: float,
                           latency: float) -> float:
    """A ring all-reduce of ``payload`` bytes over ``num_ranks``: 2 (n-1) (a + N / (n w))."""
    _check_link(bandwidth, latency)
    if num_ranks < 2:
        return 0.0
    return 2 * (num_ranks - 1) * (latency + payload / (num_ranks * bandwidth))


def _check_link(bandwidth: float, latency: float) -> None:
    if not bandwidth > 0 or not latency >= 0:
        raise ValueError(f"a link needs a bandwidth above 0 and a latency of at least 0, got "
                         f"{bandwidth:g} bytes/s and {latency:g} s")


@dataclass(frozen=True)
class WireCost:
    """What one parallelism puts on the wire in one step, for its busiest rank."""

    parallelism: str  # "pipeline", "tensor" or "data"
    bytes_per_rank: int  # bytes the rank sends (a ring's share for an all-reduce)
    transfers: int  # messages or all-reduces the rank takes part in
    seconds: float  # all of them, one after the other (alpha-beta model)
    critical_seconds: float  # the part the step must wait for (see ``wire_per_step``)
    where: str  # where the transfers sit on the timeline


def wire_per_step(degree: int, n_layers: int, batch: int, microbatch: int, seq_len: int,
                  d_model: int, vocab_size: int, bytes_per_element: int, bandwidth: float,
                  latency: float) -> list[WireCost]:
    """One model spread over ``degree`` ranks by pipeline, tensor or data parallelism.

    ``batch`` sequences per step cut into microbatches of ``microbatch`` (m = batch /
    microbatch; a data-parallel replica gets batch / degree of them). Activations and
    gradients have ``bytes_per_element``; the MLP is 4 x d_model wide. Critical path:
    every tp all-reduce (inside F and B, the next operation needs its result); for a GPipe
    pipeline the 2 (degree - 1) transfers of its fill and drain, when a transfer is shorter
    than a stage's F (the others hide behind computation; 1F1B exposes more when links are
    slow); the data-parallel all-reduce in full, run after the flush as pplab does (DDP hides
    most of it behind the backward, Li et al. 2020, arXiv:2006.15704, Sec. 3.2.3).
    """
    if degree < 2:
        raise ValueError(f"spread the model over at least 2 ranks, got {degree}")
    if batch % microbatch:
        raise ValueError(f"a batch of {batch} sequences does not cut into microbatches of "
                         f"{microbatch}")
    if batch % degree:
        raise ValueError(f"{degree} data-parallel replicas cannot share a batch of {batch} "
                         f"sequences equally")
    if n_layers < degree:
        raise ValueError(f"{degree} pipeline stages need at least {degree} layers; the model "
                         f"has {n_layers}")
    m = batch // microbatch
    one = activation_bytes(microbatch, seq_len, d_model, bytes_per_element)
    message = send_seconds(one, bandwidth, latency)
    sends = 2 * m if degree > 2 else m  # a middle stage sends both ways
    pipeline = WireCost("pipeline", sends * one, sends, sends * message,
                        2 * (degree - 1) * message,
                        "between F and F, B and B of neighbouring stages: point-to-point")
    reduces = 4 * n_layers * m
    tensor_time = reduces * ring_allreduce_seconds(one, degree, bandwidth, latency)
    tensor = WireCost("tensor", ring_wire_bytes(reduces * one, degree), reduces, tensor_time,
                      tensor_time, "inside every F (2 per layer) and B (2 per layer)")
    gradients = bytes_per_element * stage_parameters(n_layers, d_model, 4 * d_model,
                                                     vocab_size, seq_len, True, True)
    data_time = ring_allreduce_seconds(gradients, degree, bandwidth, latency)
    data = WireCost("data", ring_wire_bytes(gradients, degree), 1, data_time, data_time,
                    "once per step, after the last backward")
    return [pipeline, tensor, data]
