"""What one stage does for one action: F, B, or the split backward I then W.

What it teaches: the three kinds of backward. ``B`` computes the gradient for the stage input
and for the weights together. Zero-bubble schedules (Qi et al., ICLR 2024, arXiv:2401.10241,
Sec. 2) split it: ``I`` computes only the input gradient (``torch.autograd.grad`` w.r.t. the
stage input), which the previous stage is waiting for; ``W`` computes the weight gradients
later, when the rank would otherwise sit idle. A weight gradient needs only two things: the
layer's input, saved by the forward, and the gradient of the layer's output, which I computes
on its way to the stage input anyway. So during I a hook keeps each Linear's and LayerNorm's
output gradient, and W is then just their weight products (dW = g^T x for a Linear, the paper's
Sec. 2 split of a matmul's backward), with no second pass through the graph: I + W costs about
what B costs. Stages with other weights (embeddings on stage 0, tensor-parallel shards, stashed
versions) fall back to W = autograd over the retained graph restricted to the weights.

The stage also measures the activation memory it holds: every tensor autograd saves during a
forward (parameters excluded) is counted until that microbatch's backward frees it. Every
microbatch of a stage saves the same tensors, so they are counted through a hook on the
first forward of each input shape only; later forwards reuse the count and run without a
Python call per saved tensor (which cost about 5 % of a forward and backward here).

    pplab train --schedule zb-h1 --pp 2 --microbatches 4 --steps 3
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from pplab.engine.model import lm_loss
from pplab.engine.partition import Stage
from pplab.engine.weights import WeightStash


class _MicrobatchState:
    __slots__ = ("x", "out", "grad_out", "version", "params", "saved_bytes", "captures")

    def __init__(self) -> None:
        self.x = None
        self.out = None
        self.grad_out = None
        self.version = -1
        self.params = None
        self.saved_bytes = 0
        self.captures = None  # [module, layer input, gradient of layer output] per layer


def _weight_gradients(module: nn.Module, inp: torch.Tensor, grad: torch.Tensor):
    """(weight grad, bias grad) of a Linear or LayerNorm from its input and output gradient."""
    width = grad.shape[-1]
    grad = grad.reshape(-1, width)
    inp = inp.reshape(-1, inp.shape[-1])
    if isinstance(module, nn.Linear):
        return grad.t() @ inp, grad.sum(0) if module.bias is not None else None
    mean = inp.mean(-1, keepdim=True)
    normalized = (inp - mean) * torch.rsqrt(inp.var(-1, unbiased=False, keepdim=True)
                                            + module.eps)
    return (grad * normalized).sum(0), grad.sum(0) if module.bias is not None else None


class StageRuntime:
    """One stage on one rank: its module, optimizer, microbatches in flight and memory peak.

    ``scale`` is 1 / microbatches per step: each microbatch's loss is scaled so that the
    accumulated gradients equal those of the full batch's mean loss.
    """

    def __init__(self, module: Stage, optimizer: torch.optim.Optimizer, scale: float,
                 update_every: int | None = None, track_memory: bool = True,
                 split_backward: bool = False) -> None:
        self.module = module
        self.index = module.index
        self.is_first = module.is_first
        self.is_last = module.is_last
        self.optimizer = optimizer
        self.scale = scale
        self.update_every = update_every
        self.stash = WeightStash(module) if update_every is not None else None
        self.backwards_done = 0
        self.track_memory = track_memory
        self.live_bytes = 0
        self.peak_bytes = 0
        self._saved_bytes_by_shape: dict[tuple, int] = {}
        self.losses: dict[int, torch.Tensor] = {}
        self.states: dict[int, _MicrobatchState] = {}
        self._param_ptrs = {p.data_ptr() for p in module.parameters()}
        self.tp_comm = getattr(module, "tp_comm", None)  # set by tensor parallelism
        self._captures: list | None = None
        self.split_weights = split_backward and self._can_split_weights()
        if self.split_weights:
            for layer in module.modules():
                if isinstance(layer, nn.Linear | nn.LayerNorm):
                    layer.register_forward_hook(self._capture)

    def _can_split_weights(self) -> bool:
        if self.is_first or self.stash is not None:
            return False
        covered = {id(p) for layer in self.module.modules()
                   if type(layer) in (nn.Linear, nn.LayerNorm)
                   for p in layer.parameters(recurse=False)}
        layer_norms_affine = all(layer.elementwise_affine for layer in self.module.modules()
                                 if isinstance(layer, nn.LayerNorm))
        return layer_norms_affine and covered == {id(p) for p in self.module.parameters()}

    def _capture(self, layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self._captures is None:
            return
        record = [layer, inputs[0].detach(), None]
        self._captures.append(record)

        def keep(grad: torch.Tensor, record=record) -> None:
            record[2] = grad

        output.register_hook(keep)

    def current_version(self) -> int:
        return self.stash.version if self.stash is not None else -1

    def forward(self, mb: int, x: torch.Tensor, targets: torch.Tensor | None,
                version: int) -> torch.Tensor | None:
        """Run the forward; return the activation to pass on (None on the last stage)."""
        state = _MicrobatchState()
        self.states[mb] = state
        if not self.is_first:
            x = x.detach().requires_grad_(True)
        state.x = x
        if self.split_weights:
            state.captures = self._captures = []
        if self.stash is not None:
            state.version, state.params = self.stash.acquire(version)
            ptrs = {p.data_ptr() for p in state.params.values()}
        else:
            state.version = version
            ptrs = self._param_ptrs
        shape = (tuple(x.shape), state.params is not None)
        if self.track_memory and shape not in self._saved_bytes_by_shape:
            counted: set[int] = set()

            def pack(tensor: torch.Tensor) -> torch.Tensor:
                ptr = tensor.data_ptr()
                if ptr not in ptrs and ptr not in counted:
                    counted.add(ptr)
                    state.saved_bytes += tensor.numel() * tensor.element_size()
                return tensor

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                out = self._call(x, state)
            self._saved_bytes_by_shape[shape] = state.saved_bytes
        else:
            out = self._call(x, state)
        if self.track_memory:
            state.saved_bytes = self._saved_bytes_by_shape[shape]
            self.live_bytes += state.saved_bytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._captures = None
        if self.is_last:
            loss = lm_loss(out, targets)
            self.losses[mb] = loss.detach()
            state.out = loss * self.scale
            return None
        state.out = out
        return out.detach()

    def _call(self, x: torch.Tensor, state: _MicrobatchState) -> torch.Tensor:
        if state.params is None:
            return self.module(x)
        return functional_call(self.module, state.params, (x,))

    def _weights(self, state: _MicrobatchState) -> list[torch.Tensor]:
        if state.params is not None:
            return list(state.params.values())
        return list(self.module.parameters())

    def backward(self, mb: int, grad_out: torch.Tensor | None) -> torch.Tensor | None:
        """Full backward B: weight gradients accumulate; return the input gradient."""
        state = self.states.pop(mb)
        torch.autograd.backward(state.out, grad_out)
        grad_in = None if self.is_first else state.x.grad
        self._finish(state)
        return grad_in

    def backward_input(self, mb: int, grad_out: torch.Tensor | None) -> torch.Tensor | None:
        """I: the input gradient only; the layers' output gradients are kept for W."""
        state = self.states[mb]
        state.grad_out = grad_out
        if self.is_first:
            return None  # the first stage's input is tokens: it has no input gradient to send
        (grad_in,) = torch.autograd.grad(state.out, state.x, grad_out,
                                         retain_graph=not self.split_weights)
        if self.split_weights:
            state.out = None  # the graph is spent; W needs only the captured pairs
        return grad_in

    def backward_weight(self, mb: int) -> None:
        """W: the weight gradients of a microbatch whose I already ran."""
        state = self.states.pop(mb)
        if self.split_weights:
            with torch.no_grad():
                for layer, inp, grad in state.captures:
                    for param, value in zip((layer.weight, layer.bias),
                                            _weight_gradients(layer, inp, grad), strict=True):
                        if param is not None:
                            param.grad = value if param.grad is None else param.grad + value
        else:
            torch.autograd.backward(state.out, state.grad_out, inputs=self._weights(state))
        self._finish(state)

    def _finish(self, state: _MicrobatchState) -> None:
        self.live_bytes -= state.saved_bytes
        if self.stash is not None:
            self.stash.release(state.version)
        self.backwards_done += 1

    def due_for_update(self) -> bool:
        """Asynchronous schedules update after every ``update_every`` backwards."""
        return self.update_every is not None and self.backwards_done % self.update_every == 0

    def optimizer_step(self) -> None:
        if self.stash is not None:
            self.stash.before_update()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.stash is not None:
            self.stash.advance()
