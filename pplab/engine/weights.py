"""Weight stashing: how asynchronous pipelines keep each microbatch's gradient honest.

What it teaches: PipeDream (Narayanan et al., SOSP 2019, Sec. 3.3) updates a stage's weights
while older microbatches are still in flight. If a microbatch's backward used newer weights
than its forward, its gradient would be of no version at all. So the forward runs on a frozen
copy of its version, the backward runs on that same copy, and the gradient is applied to the
newest weights. The schedule says which version each microbatch runs with
(``pplab.schedules.weight_versions``): PipeDream's newest, so stage s of P holds up to P - s
versions; PipeDream-2BW's (Narayanan et al., ICML 2021, arXiv:2006.09503, Sec. 3.1) the
previous step's, so a stage keeps its newest weights and one shadow copy: two versions.

A version is kept while a microbatch still needs it: from its first forward (or, when a
forward scheduled on it comes after the update that replaces it, from that update) to the end
of its last backward. ``max_live_versions`` counts distinct versions held at once, the live
weights included: what meta.json records as ``max_live_weight_versions``.

    pplab train --schedule pipedream-2bw --pp 2 --microbatches 2 --steps 3
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn


class WeightStash:
    """Frozen copies of a module's parameters, one per version a microbatch still needs."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.version = 0  # the live weights' version: optimizer updates so far
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.users: Counter[int] = Counter()  # forwards run on a version, backward not done
        self.forwards_to_come: Counter[int] = Counter()  # forwards still to come on a version
        self.max_live_versions = 1

    def expect_forwards(self, versions: Iterable[int]) -> None:
        """Count the forwards still to come on each version: the version each of this
        stage's microbatches will run with, from the schedule."""
        self.forwards_to_come.update(versions)

    def acquire(self, version: int | None = None) -> tuple[int, dict[str, torch.Tensor]]:
        """Frozen parameters of ``version`` (default: the live one) for one forward."""
        version = self.version if version is None else version
        if version not in self.snapshots:
            if version != self.version:
                raise RuntimeError(
                    f"a forward needs weight version {version}, but this stage holds versions "
                    f"{sorted(self.snapshots)} and its live weights are version {self.version}")
            self.snapshots[version] = self._copy()
        self.users[version] += 1
        if self.forwards_to_come[version] > 0:
            self.forwards_to_come[version] -= 1
        self._count()
        return version, self.snapshots[version]

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

    def before_update(self) -> None:
        """Call before the optimizer changes the live weights: a version that forwards still
        scheduled on it need is copied first (2BW's shadow)."""
        if self.forwards_to_come[self.version] > 0 and self.version not in self.snapshots:
            self.snapshots[self.version] = self._copy()

    def advance(self) -> None:
        """Call after the optimizer has updated the live weights."""
        self.version += 1
        self._drop_unused()
        self._count()

    def _copy(self) -> dict[str, torch.Tensor]:
        return {name: param.detach().clone().requires_grad_(True)
                for name, param in self.module.named_parameters()}

    def _count(self) -> None:
        held = len(set(self.snapshots) | {self.version})
        self.max_live_versions = max(self.max_live_versions, held)

    def _drop_unused(self) -> None:
        for version in [v for v in self.snapshots
                        if v != self.version and not self.users[v]
                        and not self.forwards_to_come[v]]:
            del self.snapshots[version]
