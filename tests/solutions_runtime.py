"""The runtime lab's reference solution, and runtimes that each get one thing wrong.

Tests only: a learner reads the lesson and the skeleton, never this file.
"""

SOLUTION = '''
import torch
import torch.distributed as dist

LEARNER = "reference"


def blocking_step(stage, ctx):
    saved = {}
    for kind, mb in ctx.actions:
        if kind == "F":
            if ctx.is_first:
                x = ctx.inputs[mb]
            else:
                x = torch.empty(ctx.activation_shape, dtype=ctx.dtype)
                dist.recv(x, ctx.rank - 1)
                x.requires_grad_()
            out = stage(x)
            if ctx.is_last:
                out = ctx.loss(out, mb)
            else:
                dist.send(out.detach(), ctx.rank + 1)
            saved[mb] = (x, out)
        else:
            x, out = saved.pop(mb)
            if ctx.is_last:
                out.backward()
            else:
                grad = torch.empty(ctx.activation_shape, dtype=ctx.dtype)
                dist.recv(grad, ctx.rank + 1)
                out.backward(grad)
            if not ctx.is_first:
                dist.send(x.grad, ctx.rank - 1)
    ctx.optimizer.step()


def overlapped_step(stage, ctx):
    inputs, grads = {}, {}
    for kind, mb in ctx.actions:  # every receive of the step, posted before any compute
        if kind == "F" and not ctx.is_first:
            buffer = torch.empty(ctx.activation_shape, dtype=ctx.dtype)
            inputs[mb] = (buffer, dist.irecv(buffer, ctx.rank - 1))
        elif kind == "B" and not ctx.is_last:
            buffer = torch.empty(ctx.activation_shape, dtype=ctx.dtype)
            grads[mb] = (buffer, dist.irecv(buffer, ctx.rank + 1))
    sends, saved = [], {}
    for kind, mb in ctx.actions:
        if kind == "F":
            if ctx.is_first:
                x = ctx.inputs[mb]
            else:
                x, request = inputs.pop(mb)
                request.wait()
                x.requires_grad_()
            out = stage(x)
            if ctx.is_last:
                out = ctx.loss(out, mb)
            else:
                sends.append(dist.isend(out.detach(), ctx.rank + 1))
            saved[mb] = (x, out)
        else:
            x, out = saved.pop(mb)
            if ctx.is_last:
                out.backward()
            else:
                grad, request = grads.pop(mb)
                request.wait()
                out.backward(grad)
            if not ctx.is_first:
                sends.append(dist.isend(x.grad, ctx.rank - 1))
    for request in sends:
        request.wait()
    ctx.optimizer.step()
'''

# Each fault is one edit of the solution: (what it breaks, text replaced, replacement).
WRONG_RANK = ("dist.send(x.grad, ctx.rank - 1)", "dist.send(x.grad, ctx.rank + 1)")
# The blocking runtime run on 1F1B: at p = 2, rank 0 sends the activation of microbatch 1
# while rank 1 sends the gradient of microbatch 0, and a blocking send waits for its receive.
DEADLOCK = ("def overlapped_step(stage, ctx):\n",
            "def overlapped_step(stage, ctx):\n    return blocking_step(stage, ctx)\n\n\n"
            "def unused(stage, ctx):\n")
EARLY_STEP = ("                dist.send(x.grad, ctx.rank - 1)\n    ctx.optimizer.step()",
              "                dist.send(x.grad, ctx.rank - 1)\n"
              "            if mb == 0:\n                ctx.optimizer.step()")

# The received input is not made to require a gradient: x.grad stays None.
NO_INPUT_GRAD = ("                dist.recv(x, ctx.rank - 1)\n                x.requires_grad_()\n",
                 "                dist.recv(x, ctx.rank - 1)\n")
# Rank 0 feeds the next microbatch's tokens: its first forward is microbatch 1's.
SHIFTED = ("                x = ctx.inputs[mb]\n            else:\n                x = torch.empty("
           "ctx.activation_shape, dtype=ctx.dtype)\n                dist.recv(x, ctx.rank - 1)",
           "                x = ctx.inputs[(mb + 1) % len(ctx.inputs)]\n            else:\n"
           "                x = torch.empty(ctx.activation_shape, dtype=ctx.dtype)\n"
           "                dist.recv(x, ctx.rank - 1)")

# Rank 1 never ends its step.
ENDLESS = ("def blocking_step(stage, ctx):\n",
           "def blocking_step(stage, ctx):\n    while ctx.rank == 1:\n        pass\n")


def with_fault(fault: tuple[str, str]) -> str:
    old, new = fault
    assert SOLUTION.count(old) == 1, old
    return SOLUTION.replace(old, new)
