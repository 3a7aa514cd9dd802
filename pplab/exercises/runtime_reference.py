"""What one process computes for a runtime lab case: the ground truth.

``reference(case)`` (a case of ``pplab.exercises.runtime_cases``) runs the whole step in one
process twice over: the unsplit model
(``build_reference_model``: the loss of every microbatch and the gradient of every weight,
the parity the learner's pipeline must match) and the same model cut into its stages, one
microbatch at a time, to know what crosses each cut: the activation each stage hands on,
the gradient each stage is given for its output, in which the parent recognises which
microbatch a learner's forward or backward was.

    python -c "from pplab.exercises.runtime_reference import *; \\
print(reference(RuntimeCase(2, 3, 0)).losses)"
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pplab.exercises.runtime_cases import LEARNING_RATE, TOLERANCE, RuntimeCase

if TYPE_CHECKING:
    import torch


@dataclass
class Reference:
    """One process's step for a case (tensors keyed by (stage, microbatch))."""

    outputs: dict[tuple[int, int], torch.Tensor]
    grad_outputs: dict[tuple[int, int], torch.Tensor]  # given to a stage's output (not the last)
    losses: list[float]
    grads: dict[str, torch.Tensor]  # by the unsplit model's parameter names
    weights_after: dict[str, torch.Tensor]

    def which(self, table: str, stage: int, values: list | None) -> int | None:
        """The microbatch whose ``outputs`` or ``grad_outputs`` of ``stage`` these are."""
        import torch

        if values is None:
            return None
        found = torch.tensor(values, dtype=torch.float64)
        for (s, mb), tensor in getattr(self, table).items():
            if s == stage and tensor.numel() == found.numel() and torch.allclose(
                    tensor.reshape(-1), found, **TOLERANCE):
                return mb
        return None


@lru_cache(maxsize=16)
def reference(case: RuntimeCase) -> Reference:
    import torch  # the grader's parent only: pplab.exercises imports without torch

    from pplab.engine.model import build_reference_model, lm_loss
    from pplab.engine.partition import build_stage

    batches = case.batches()
    model = build_reference_model(case.config, torch.float64)
    losses = []
    for tokens, targets in batches:
        loss = lm_loss(model(tokens), targets) / case.m
        loss.backward()
        losses.append(float(loss.detach()))
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    after = {name: (p - LEARNING_RATE * p.grad).detach() for name, p in model.named_parameters()}

    stages = [build_stage(case.config, case.split, s, torch.float64) for s in range(case.p)]
    outputs, grad_outputs = {}, {}
    for mb, (tokens, targets) in enumerate(batches):
        inputs, outs, x = [], [], tokens
        for stage in stages:
            x = x if stage.is_first else x.detach().requires_grad_(True)
            inputs.append(x)
            outs.append(stage(x))
            x = outs[-1]
        for s, out in enumerate(outs):
            outputs[(s, mb)] = out.detach()
        (lm_loss(outs[-1], targets) / case.m).backward()
        for s in range(case.p - 2, -1, -1):
            grad_outputs[(s, mb)] = inputs[s + 1].grad.detach()
            outs[s].backward(inputs[s + 1].grad)
    return Reference(outputs, grad_outputs, losses, grads, after)
