"""Data parallelism: replicas of the same stage average their gradients before stepping.

What it teaches: each data-parallel replica runs the whole schedule on its own contiguous
1/dp slice of the global batch. Because every replica's loss is a mean over an equal number of
samples, the mean of the replicas' gradients is exactly the gradient of the full-batch mean
loss, so after one all-reduce (sum, then divide by dp) every replica takes the same optimizer
step as a single process would (Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", VLDB, arXiv:2006.15704, Sec. 2).

All gradients of the stage travel in one flattened bucket, one collective per step, recorded as
an ``allreduce`` event with the bucket's bytes and detail ``"dp grads"``. (DDP overlaps smaller
buckets with the backward; a single bucket after the flush keeps the timeline easy to read.)

    pplab train --schedule gpipe --pp 2 --dp 2 --steps 3
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn

from pplab.timeline.events import EventKind

DP_DETAIL = "dp grads"


def allreduce_gradients(module: nn.Module, dp_group, dp_size: int, recorder=None, *,
                        stage: int = -1) -> int:
    """Average every parameter's gradient over the dp group, in place; return the bytes sent.

    A parameter without a gradient contributes zeros, so every replica's bucket has the same
    layout even when one replica's slice left a parameter unused.
    """
    if dp_size < 1:
        raise ValueError(f"dp size must be at least 1, got {dp_size}")
    params = [p for p in module.parameters() if p.requires_grad]
    if dp_size == 1 or not params:
        return 0
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if stage < 0:
        stage = int(getattr(module, "index", -1))  # pplab's Stage knows its place
    bucket = torch.cat([p.grad.reshape(-1) for p in params])
    nbytes = bucket.numel() * bucket.element_size()
    span = nullcontext() if recorder is None else recorder.span(
        EventKind.ALLREDUCE, stage=stage, bytes=nbytes, detail=DP_DETAIL)
    with span:
        dist.all_reduce(bucket, group=dp_group)
    bucket /= dp_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(bucket[offset:offset + n].view_as(p.grad))
        offset += n
    return nbytes
