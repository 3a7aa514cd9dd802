"""Megatron-style tensor parallelism: one layer's matrices split across ranks.

What it teaches: a transformer block needs only two all-reduces in its forward and two in its
backward when its matrices are split the Megatron way (Shoeybi et al. 2019, "Megatron-LM",
arXiv:1909.08053, Sec. 3, Fig. 3):

* the first matrix of each pair (``attn.qkv``, ``mlp.fc``) is split by output columns, so every
  rank computes its own heads / its own slice of the hidden units with no communication;
* the second (``attn.proj``, ``mlp.proj``) is split by input rows, so every rank produces a
  partial sum of the full output, and one all-reduce adds them up.

Two conjugate operators carry the communication. ``f`` sits before a column-parallel layer:
identity in the forward, all-reduce of the input gradient in the backward (each rank only saw
its own slice of the path). ``g`` sits after a row-parallel layer: all-reduce in the forward,
identity in the backward. Each collective is recorded as an ``allreduce`` event with the
bytes of the tensor every rank contributes and detail ``"tp f"`` or ``"tp g"``.

Attention heads follow the column split: the packed ``qkv`` output is [q | k | v], so rank t
keeps rows ``j*d + t*d/tp ... j*d + (t+1)*d/tp`` of each of the three blocks and therefore the
q, k and v of heads ``t*h/tp ... (t+1)*h/tp``; softmax is per head, so no exchange is needed
inside attention.

    pplab train --schedule 1f1b --pp 2 --tp 2 --steps 3
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pplab.timeline.events import EventKind

TP_FORWARD_DETAIL = "tp g"
TP_BACKWARD_DETAIL = "tp f"


class TensorParallelComm:
    """The tp group of one rank and where its collectives get recorded.

    ``stage`` and ``microbatch`` label the events; the executor may set ``microbatch`` before
    each action so the backward all-reduces land on the right microbatch row.
    """

    def __init__(self, group, tp_size: int, recorder=None, stage: int = -1) -> None:
        self.group = group
        self.tp_size = tp_size
        self.recorder = recorder
        self.stage = stage
        self.microbatch = -1

    def all_reduce(self, tensor: torch.Tensor, detail: str) -> torch.Tensor:
        tensor = tensor.contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        span = nullcontext() if self.recorder is None else self.recorder.span(
            EventKind.ALLREDUCE, stage=self.stage, microbatch=self.microbatch, bytes=nbytes,
            detail=detail)
        with span:
            dist.all_reduce(tensor, group=self.group)
        return tensor


class _CopyToTensorParallel(torch.autograd.Function):
    """Megatron's f: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, comm: TensorParallelComm) -> torch.Tensor:
        ctx.comm = comm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.comm.all_reduce(grad.clone(), TP_BACKWARD_DETAIL), None


class _ReduceFromTensorParallel(torch.autograd.Function):
    """Megatron's g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, comm: TensorParallelComm) -> torch.Tensor:
        return comm.all_reduce(x.clone(), TP_FORWARD_DETAIL)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def copy_to_tensor_parallel(x: torch.Tensor, comm: TensorParallelComm) -> torch.Tensor:
    return _CopyToTensorParallel.apply(x, comm)


def reduce_from_tensor_parallel(x: torch.Tensor, comm: TensorParallelComm) -> torch.Tensor:
    return _ReduceFromTensorParallel.apply(x, comm)


class ColumnParallelLinear(nn.Module):
    """Y_t = f(X) A_t + b_t: this rank's output columns of a linear layer."""

    def __init__(self, full: nn.Linear, rows: torch.Tensor, comm: TensorParallelComm) -> None:
        super().__init__()
        self.comm = comm
        self.in_features = full.in_features
        self.out_features = int(rows.numel())
        self.register_buffer("index", rows.clone(), persistent=False)
        self.weight = nn.Parameter(self.shard_of(full.weight.detach()).clone())
        self.bias = None if full.bias is None else nn.Parameter(
            self.shard_of(full.bias.detach()).clone())

    def shard_of(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's part of a full-size weight or bias (or of its gradient)."""
        return full[self.index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(copy_to_tensor_parallel(x, self.comm), self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features} "
                f"(of a column split over {self.comm.tp_size} ranks)")


class RowParallelLinear(nn.Module):
    """Y = g(X_t B_t) + b: this rank's input rows; the bias is added once, after the sum."""

    def __init__(self, full: nn.Linear, cols: torch.Tensor, comm: TensorParallelComm) -> None:
        super().__init__()
        self.comm = comm
        self.in_features = int(cols.numel())
        self.out_features = full.out_features
        self.register_buffer("index", cols.clone(), persistent=False)
        self.weight = nn.Parameter(self.shard_of(full.weight.detach()).clone())
        self.bias = None if full.bias is None else nn.Parameter(full.bias.detach().clone())

    def shard_of(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's part of a full-size weight (the bias is whole on every rank)."""
        return full[:, self.index] if full.dim() == 2 else full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = reduce_from_tensor_parallel(F.linear(x, self.weight), self.comm)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features} (of a row split over {self.comm.tp_size} "
                f"ranks), out_features={self.out_features}")


def shard_indices(width: int, tp_rank: int, tp_size: int, blocks: int = 1) -> torch.Tensor:
    """Indices of rank ``tp_rank``'s share of each of ``blocks`` equal blocks of ``width``.

    ``blocks=3`` serves the packed [q | k | v] projection: every rank takes the same slice of
    q, of k and of v, i.e. the same heads of all three.
    """
    block = width // blocks
    if block * blocks != width or block % tp_size:
        raise ValueError(
            f"cannot split {blocks} block(s) of width {width // blocks} over tp {tp_size}: "
            f"{block} is not divisible by {tp_size}"
        )
    share = block // tp_size
    return torch.cat([
        torch.arange(j * block + tp_rank * share, j * block + (tp_rank + 1) * share)
        for j in range(blocks)
    ])


def check_tensor_parallel(n_heads: int, d_model: int, d_ff: int, tp_size: int) -> None:
    """Refuse shapes that cannot be split, with the numbers."""
    if tp_size < 1:
        raise ValueError(f"tp size must be at least 1, got {tp_size}")
    if n_heads % tp_size:
        raise ValueError(f"{n_heads} attention heads are not divisible by tp {tp_size}")
    if d_model % tp_size:
        raise ValueError(f"model width {d_model} is not divisible by tp {tp_size}")
    if d_ff % tp_size:
        raise ValueError(f"MLP width {d_ff} is not divisible by tp {tp_size}")


def _blocks_of(stage_module: nn.Module) -> list[nn.Module]:
    """Every transformer block in the stage, found by shape so any stage slicing works."""
    return [
        m for m in stage_module.modules()
        if hasattr(m, "attn") and hasattr(m, "mlp")
        and isinstance(getattr(m.attn, "qkv", None), nn.Linear)
        and isinstance(getattr(m.mlp, "fc", None), nn.Linear)
    ]


def parallelize_block(block: nn.Module, comm: TensorParallelComm, tp_rank: int) -> None:
    """Swap one block's four matrices for their shards, in place."""
    tp_size = comm.tp_size
    attn, mlp = block.attn, block.mlp
    d_model = attn.qkv.in_features
    qkv_rows = shard_indices(attn.qkv.out_features, tp_rank, tp_size, blocks=3)
    attn_cols = shard_indices(d_model, tp_rank, tp_size)
    ff_rows = shard_indices(mlp.fc.out_features, tp_rank, tp_size)
    attn.qkv = ColumnParallelLinear(attn.qkv, qkv_rows, comm)
    attn.proj = RowParallelLinear(attn.proj, attn_cols, comm)
    mlp.fc = ColumnParallelLinear(mlp.fc, ff_rows, comm)
    mlp.proj = RowParallelLinear(mlp.proj, ff_rows, comm)
    # The attention forward reads its width from the qkv weight but its head count from here.
    attn.n_heads = attn.n_heads // tp_size


def parallelize_stage(stage_module: nn.Module, tp_group, tp_rank: int, tp_size: int,
                      recorder=None, *, stage: int = -1) -> nn.Module:
    """Split every block of ``stage_module`` over the tp group, in place, and return it.

    Shards are cut from the full weights the module already holds, so a model built from the
    same seed on one process is the exact reference. Embeddings, final norm and head stay
    replicated: their gradients come out identical on every tp rank because ``f`` sums the
    input gradient before it leaves the block.
    """
    if tp_size < 1 or not 0 <= tp_rank < tp_size:
        raise ValueError(f"tp rank {tp_rank} is outside tp size {tp_size}")
    if tp_size == 1:
        return stage_module
    if stage < 0:
        stage = int(getattr(stage_module, "index", -1))  # pplab's Stage knows its place
    blocks = _blocks_of(stage_module)
    if not blocks:
        raise ValueError(f"{type(stage_module).__name__} holds no transformer block to split")
    for block in blocks:  # check every block before changing any
        check_tensor_parallel(block.attn.n_heads, block.attn.qkv.in_features,
                              block.mlp.fc.out_features, tp_size)
    comm = TensorParallelComm(tp_group, tp_size, recorder, stage)
    for block in blocks:
        parallelize_block(block, comm, tp_rank)
    stage_module.tp_comm = comm
    return stage_module
