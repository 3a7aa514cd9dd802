"""Write your own pipeline runtime: the sends, receives, backwards and the optimizer step.

Copy this file to your own folder, fill in the TODOs, and check it:

    cp lessons/04a-write-your-own-runtime/my_runtime.py my_runtime.py
    .venv/bin/pplab exercise check runtime-lab --file my_runtime.py

The grader starts one process per rank (gloo on CPU, the process group already joined),
gives each its stage of pplab's toy GPT (float64) and calls your function once per training
step with:

    stage                 this rank's torch.nn.Module: stage(x) runs its forward
    ctx.rank              this rank (stage r lives on rank r); ctx.world_size: p
    ctx.is_first          rank 0: its input is tokens, ctx.inputs[mb]
    ctx.is_last           rank p - 1: its output goes into ctx.loss(output, mb)
    ctx.actions           this rank's part of the schedule, in order: [("F", 0), ("B", 0), ...]
    ctx.activation_shape  the shape of what crosses a cut (and of its gradient)
    ctx.dtype             torch.float64
    ctx.loss(output, mb)  microbatch mb's share of the step's loss (a scalar to backward)
    ctx.optimizer         this stage's optimizer (SGD); the gradients start at None

Run the actions in the order given (GPipe or 1F1B: your code must not care which). Use
torch.distributed's send, recv, isend, irecv and the wait() of what the last two return: the
grader records them (and your stage's forwards and backwards) to draw your timeline and to
say which rank waits on what. A send or wait that lasts 8 s is reported as a deadlock.

Your file runs in processes of their own with torch but without pplab: import pplab, start a
process or open a socket and it gets no points. As shipped, every piece raises
NotImplementedError naming what it should do; the grader shows the first one it meets.
"""


LEARNER = "your-name"  # your name, as you hand it in: the hidden cases are drawn for it


# Part 1: blocking. dist.send returns when the receiver has taken the tensor; dist.recv when
# the tensor has arrived. Graded on GPipe.

def blocking_step(stage, ctx):
    """One training step of ctx.actions with blocking send and recv."""
    saved = {}  # microbatch -> (its input, its output), kept from the forward for the backward
    for kind, mb in ctx.actions:
        if kind == "F":
            blocking_forward(stage, ctx, mb, saved)
        else:
            blocking_backward(stage, ctx, mb, saved)
    # TODO: step the optimizer once, after the last backward.
    raise NotImplementedError("step ctx.optimizer once, after the last backward")


def blocking_forward(stage, ctx, mb, saved):
    # TODO: the input is ctx.inputs[mb] on the first rank; on the others, receive it from
    # rank - 1 into a new tensor of ctx.activation_shape and ctx.dtype, and make it
    # require a gradient (its gradient is what you send back in the backward). Run the
    # stage; on the last rank pass the output to ctx.loss, on the others send it to
    # rank + 1. Keep what the backward needs in saved[mb].
    raise NotImplementedError("the forward of one microbatch: get its input, run the stage, "
                              "hand the output on (or into ctx.loss on the last rank)")


def blocking_backward(stage, ctx, mb, saved):
    # TODO: on the last rank, backward from the loss; on the others, receive the gradient of
    # the output from rank + 1 and backward with it. Then, except on the first rank, send
    # the gradient of the input to rank - 1.
    raise NotImplementedError("the backward of one microbatch: its output's gradient in, its "
                              "input's gradient out")


# Part 2: overlapped. dist.isend and dist.irecv return at once with a request whose wait()
# blocks; post every receive before you need it, so the data arrives while you compute, and
# wait for your sends at the end of the step. Graded on GPipe and on 1F1B.

def overlapped_step(stage, ctx):
    """One training step of ctx.actions with isend, irecv posted ahead, and wait."""
    # TODO: write it. Post the receives of the step first (which ones does this rank get,
    # and from whom, in what order?), keep the requests of your sends, wait for each
    # receive when its action needs it, then for every send, then step the optimizer.
    raise NotImplementedError("the overlapped step: post the receives, run the actions, wait "
                              "for the sends, step the optimizer")
