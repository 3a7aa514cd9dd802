"""Weight stashing: how asynchronous pipelines keep each microbatch's gradient honest.

What it teaches: PipeDream (Narayanan et al., SOSP 2019, Sec. 3.3) updates a stage's weights
while older microbatches are still in flight. If a microbatch's backward used newer weights
than its forward, its gradient would be wrong. So the forward runs on a frozen copy of the
current version, the backward runs on that same copy, and the gradient is applied to the
newest weights. Stage s of P keeps up to P - s versions; PipeDream-2BW (Narayanan et al.,
ICML 2021) updates once per M microbatches and keeps two.

    pplab train --schedule pipedream --pp 3 --microbatches 4 --steps 3
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn


class WeightStash:
    """Frozen copies of a module's parameters, one per version still used by a microbatch."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.version = 0
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.users: Counter[int] = Counter()
        self.max_live_versions = 0

    def acquire(self) -> tuple[int, dict[str, torch.Tensor]]:
        """The current version and its frozen parameters, for one microbatch's forward."""
        if self.version not in self.snapshots:
            self.snapshots[self.version] = {
                name: param.detach().clone().requires_grad_(True)
                for name, param in self.module.named_parameters()
            }
        self.users[self.version] += 1
        self.max_live_versions = max(self.max_live_versions, len(self.snapshots))
        return self.version, self.snapshots[self.version]

    def release(self, version: int) -> None:
        """Move this microbatch's gradient onto the live weights; drop unused old versions."""
        snapshot = self.snapshots[version]
        for name, param in self.module.named_parameters():
            grad = snapshot[name].grad
            if grad is None:
                continue
            param.grad = grad if param.grad is None else param.grad + grad
            snapshot[name].grad = None
        self.users[version] -= 1
        self._drop_unused()

    def advance(self) -> None:
        """Call after the optimizer has updated the live weights."""
        self.version += 1
        self._drop_unused()

    def _drop_unused(self) -> None:
        for version in [v for v in self.snapshots if v != self.version and not self.users[v]]:
            del self.snapshots[version]
