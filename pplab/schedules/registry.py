"""The registry of schedule families: a name maps to a pure builder function.

Every builder has the signature ``builder(pp_size, num_microbatches, num_chunks, **options)``
and returns a ``Schedule``. ``pp_size`` is the pipeline depth P (ranks of one pipeline);
``num_chunks`` is V, the model chunks per rank, so the schedule has ``num_stages`` = P x V
model stages (V is 1 except for looped placements, and 2 for the V-shaped ones). Adding a
family means writing one builder and decorating it with ``@register``; no executor changes.

    python -m pplab schedules
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pplab.limits import check_schedule_size
from pplab.schedules.actions import Schedule

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
    actions_per_microbatch: int = 2  # F and B; 3 where the backward is split into I and W

    @property
    def chunks_rule(self) -> str | None:
        """How ``--chunks`` applies, for listings: None (always 1), "2" or ">= 2"."""
        if self.max_chunks == 1:
            return None
        if self.min_chunks == self.max_chunks:
            return str(self.min_chunks)
        return f">= {self.min_chunks}"

    def check(self, pp_size: int, num_microbatches: int, num_chunks: int) -> None:
        """Raise ValueError naming the numbers that this family cannot build."""
        for what, value in (("pipeline depth", pp_size), ("microbatches", num_microbatches),
                            ("chunks", num_chunks)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.name}: {what} must be a whole number, got {value!r}")
        if pp_size < 1:
            raise ValueError(f"{self.name} needs a pipeline of at least 1 rank, got {pp_size}")
        if num_microbatches < 1:
            raise ValueError(f"{self.name} needs at least 1 microbatch, got {num_microbatches}")
        if self.min_chunks == self.max_chunks and num_chunks != self.min_chunks:
            chunks = "1 chunk" if self.min_chunks == 1 else f"exactly {self.min_chunks} chunks"
            raise ValueError(f"{self.name} places {chunks} per rank; got --chunks {num_chunks}")
        if num_chunks < self.min_chunks:
            raise ValueError(
                f"{self.name} needs at least {self.min_chunks} chunks per rank, got {num_chunks}"
            )
        if self.max_chunks is not None and num_chunks > self.max_chunks:
            raise ValueError(
                f"{self.name} places at most {self.max_chunks} chunks per rank; "
                f"got --chunks {num_chunks}")


SCHEDULES: dict[str, ScheduleFamily] = {}


def register(
    name: str,
    *,
    paper: str,
    min_chunks: int = 1,
    max_chunks: int | None = 1,
    asynchronous: bool = False,
    actions_per_microbatch: int = 2,
) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        # the docstring's first paragraph, on one line: a sentence is never cut at a wrap
        summary = " ".join((builder.__doc__ or "").strip().split("\n\n")[0].split())
        SCHEDULES[name] = ScheduleFamily(
            name, builder, summary, paper, min_chunks, max_chunks, asynchronous,
            actions_per_microbatch,
        )
        return builder

    return decorate


def build(
    name: str, pp_size: int, num_microbatches: int, num_chunks: int | None = None, **options
) -> Schedule:
    """Build the schedule family ``name``; raise ValueError with the wrong numbers."""
    family = SCHEDULES.get(name)
    if family is None:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if num_chunks is None:
        num_chunks = family.min_chunks
    family.check(pp_size, num_microbatches, num_chunks)
    steps = options.get("num_steps", 1) if family.asynchronous else 1
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{name} needs a whole number of steps >= 1, got {steps!r}")
    check_schedule_size(name, pp_size, num_microbatches, num_chunks,
                        family.actions_per_microbatch, steps)
    return family.builder(pp_size, num_microbatches, num_chunks, **options)


def depth_from_flags(family_name: str, pp_size: int | None, num_stages: int | None,
                     num_chunks: int | None) -> int | None:
    """The depth P from the command line's ``--pp P`` or ``--stages S`` (= P x V).

    Both flags exist because learners meet both words; they must agree, and ``--stages``
    must be a multiple of the chunks per rank.
    """
    family = SCHEDULES.get(family_name)
    chunks = num_chunks or (family.min_chunks if family else 1)
    depth_from_stages = None
    if num_stages is not None:
        if num_stages < 1 or chunks < 1 or num_stages % chunks:
            raise ValueError(f"--stages {num_stages} is not a multiple of {chunks} chunks per "
                             f"rank; --stages counts model stages, P x V")
        depth_from_stages = num_stages // chunks
    if pp_size is not None and depth_from_stages is not None and pp_size != depth_from_stages:
        raise ValueError(f"--pp {pp_size} and --stages {num_stages} disagree: {num_stages} "
                         f"stages with {chunks} chunks per rank need --pp {depth_from_stages}")
    return pp_size if pp_size is not None else depth_from_stages
