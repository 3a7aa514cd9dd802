"""The registry of schedule families: a name maps to a pure builder function.

Every builder has the signature ``builder(num_stages, num_microbatches, num_chunks, **options)``
and returns a ``Schedule``. ``num_stages`` is the pipeline depth P: one stage per rank, except
for interleaved schedules, which cut each rank's share of the model into ``num_chunks`` chunks
and so produce P x V stages. Adding a family means writing one builder and decorating it with
``@register``; no executor changes.

    python -m pplab.cli schedules
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .actions import Schedule

Builder = Callable[..., Schedule]


@dataclass(frozen=True)
class ScheduleFamily:
    name: str
    builder: Builder
    summary: str
    paper: str
    min_chunks: int = 1
    max_chunks: int | None = 1
    asynchronous: bool = False

    def check(self, num_stages: int, num_microbatches: int, num_chunks: int) -> None:
        """Raise ValueError naming the numbers that this family cannot build."""
        if num_stages < 1:
            raise ValueError(f"{self.name} needs at least 1 stage, got {num_stages}")
        if num_microbatches < 1:
            raise ValueError(f"{self.name} needs at least 1 microbatch, got {num_microbatches}")
        if num_chunks < self.min_chunks:
            raise ValueError(
                f"{self.name} needs at least {self.min_chunks} chunks per rank, got {num_chunks}"
            )
        if self.max_chunks is not None and num_chunks > self.max_chunks:
            raise ValueError(
                f"{self.name} places {self.max_chunks} chunk per rank; got --chunks {num_chunks}"
            )


SCHEDULES: dict[str, ScheduleFamily] = {}


def register(
    name: str,
    *,
    paper: str,
    min_chunks: int = 1,
    max_chunks: int | None = 1,
    asynchronous: bool = False,
) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        summary = (builder.__doc__ or "").strip().splitlines()[0]
        SCHEDULES[name] = ScheduleFamily(
            name, builder, summary, paper, min_chunks, max_chunks, asynchronous
        )
        return builder

    return decorate


def build(
    name: str, num_stages: int, num_microbatches: int, num_chunks: int | None = None, **options
) -> Schedule:
    """Build the schedule family ``name``; raise ValueError with the wrong numbers."""
    family = SCHEDULES.get(name)
    if family is None:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if num_chunks is None:
        num_chunks = family.min_chunks
    family.check(num_stages, num_microbatches, num_chunks)
    return family.builder(num_stages, num_microbatches, num_chunks, **options)
