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

    python -c "from pplab.parallel_formulas import *; print(tp_allreduce_bytes(4, 8, 4, 32, 64, 2))"
"""

from __future__ import annotations


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
