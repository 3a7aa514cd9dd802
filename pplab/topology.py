"""The grid of ranks: pipeline x data x tensor parallelism.

What it teaches: with pp x dp x tp ranks every process has one global rank and three
coordinates. Tensor-parallel ranks talk on every layer, so they are numbered next to each
other (tp varies fastest: on a real cluster they share a node and its fast links);
data-parallel replicas talk once per step; pipeline stages talk only at the cuts, point to
point, so they may sit furthest apart. This is Megatron-LM's ordering (Narayanan et al.,
SC 2021, arXiv:2104.04473, Sec. 3), held the way torchtitan's ``ParallelDims`` holds it: one
small frozen object is the only thing that knows the world size and turns a global rank into
coordinates. The executor works in pipeline coordinates (``pp_rank``); the Event table and
``--fault`` name global ranks.

Importing this module needs no torch; only ``build_groups`` talks to torch.distributed.

    python -c "from pplab.topology import Topology; print(Topology(2, 2, 1).coords(3))"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from pplab.limits import MAX_WORLD_SIZE


class Coords(NamedTuple):
    """A process's place in the grid: pipeline position, data replica, tensor shard."""

    pp: int
    dp: int
    tp: int


class Groups(NamedTuple):
    pp_ranks: tuple[int, ...]  # global rank of each pipeline position for this (dp, tp)
    tp_group: Any
    tp_ranks: tuple[int, ...]
    dp_group: Any
    dp_ranks: tuple[int, ...]


@dataclass(frozen=True)
class Topology:
    """``pp_size`` x ``tp_size`` x ``dp_size`` processes; ``world`` checks a given world size."""

    pp_size: int
    tp_size: int = 1
    dp_size: int = 1
    world: int | None = None

    def __post_init__(self) -> None:
        for name in ("pp_size", "tp_size", "dp_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.world_size > MAX_WORLD_SIZE:
            raise ValueError(f"{self.describe()} is over pplab's limit of {MAX_WORLD_SIZE:,} "
                             f"processes (pplab.limits)")
        if self.world is not None and self.world != self.world_size:
            raise ValueError(f"world size {self.world} != pp {self.pp_size} x tp {self.tp_size}"
                             f" x dp {self.dp_size}")

    @property
    def world_size(self) -> int:
        return self.pp_size * self.tp_size * self.dp_size

    def describe(self) -> str:
        """``pp 2 x tp 2 x dp 1 = 4 ranks``: the product, spelled out for error messages."""
        return (f"pp {self.pp_size} x tp {self.tp_size} x dp {self.dp_size} = "
                f"{self.world_size} ranks")

    def rank_of(self, pp: int, dp: int, tp: int) -> int:
        """The global rank at coordinates (pp, dp, tp)."""
        return (pp * self.dp_size + dp) * self.tp_size + tp

    def coords(self, rank: int) -> Coords:
        """The coordinates of global ``rank``; ValueError outside the world."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} is outside the world of {self.world_size} ranks")
        tp = rank % self.tp_size
        dp = (rank // self.tp_size) % self.dp_size
        return Coords(rank // (self.tp_size * self.dp_size), dp, tp)

    def build_groups(self, rank: int) -> Groups:
        """Create every tp and dp group on every rank in the same order, as torch requires."""
        import torch.distributed as dist

        me = self.coords(rank)
        tp_group = dp_group = None
        tp_ranks = dp_ranks = ()
        for pp in range(self.pp_size):
            for dp in range(self.dp_size):
                ranks = tuple(self.rank_of(pp, dp, tp) for tp in range(self.tp_size))
                group = dist.new_group(list(ranks)) if self.tp_size > 1 else None
                if (pp, dp) == (me.pp, me.dp):
                    tp_group, tp_ranks = group, ranks
        for pp in range(self.pp_size):
            for tp in range(self.tp_size):
                ranks = tuple(self.rank_of(pp, dp, tp) for dp in range(self.dp_size))
                group = dist.new_group(list(ranks)) if self.dp_size > 1 else None
                if (pp, tp) == (me.pp, me.tp):
                    dp_group, dp_ranks = group, ranks
        pp_ranks = tuple(self.rank_of(pp, me.dp, me.tp) for pp in range(self.pp_size))
        return Groups(pp_ranks, tp_group, tp_ranks, dp_group, dp_ranks)
