"""Actions and schedules: the one language both executors read.

An ``Action`` is one piece of compute on one stage for one microbatch and prints the way
``torch.distributed.pipelining`` prints its actions (``2F0`` is stage 2 forward of
microbatch 0), so a learner can hold our schedules next to PyTorch's. A ``Schedule`` is the
ordered list of actions each rank runs, plus which rank holds each stage. Time never
appears here: bubbles come out of executing a schedule, they are never written into one.

One more entry exists for schedules that overlap work, DualPipe-V above all: an
``OverlapPair`` runs a forward and a backward of two microbatches at once, and prints the
way PyTorch prints its ``OVERLAP_F_B`` action, ``(0F7;7B3)OVERLAP_F_B``. Code that needs the
plain actions of an entry asks for ``entry.sub_actions``: ``(action,)`` for an ``Action``,
``(forward, backward)`` for a pair; ``Schedule.all_actions()`` yields the plain ones.

    >>> from pplab.schedules import build
    >>> print(build("1f1b", pp_size=2, num_microbatches=3).pretty())
    rank 0: 0F0 0F1 0B0 0F2 0B1 0B2
    rank 1: 1F0 1B0 1F1 1B1 1F2 1B2
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class ActionKind(StrEnum):
    """What an action computes, spelled as PyTorch's ``_ComputationType`` prints it.

    A ``StrEnum``: ``ActionKind.FORWARD == "F"`` and hashes like ``"F"``, so a kind read back
    from a CSV file or from the Event table's string column is the same key as the member.
    """

    FORWARD = "F"
    FULL_BACKWARD = "B"  # input and weight gradients together
    BACKWARD_INPUT = "I"  # gradient for the stage input only: unblocks the previous stage
    BACKWARD_WEIGHT = "W"  # gradient for the weights only: can wait to fill a bubble


# Short names the schedule builders and walks spell their actions with.
FORWARD = ActionKind.FORWARD
FULL_BACKWARD = ActionKind.FULL_BACKWARD
BACKWARD_INPUT = ActionKind.BACKWARD_INPUT
BACKWARD_WEIGHT = ActionKind.BACKWARD_WEIGHT
COMPUTE_KINDS = tuple(ActionKind)
# A forward and a backward run together; never an event kind: the simulator and the engine
# record the two halves as an F event and a B (or I) event.
OVERLAP_F_B = "OVERLAP_F_B"

# Same shape as PyTorch's _action_regex, restricted to the compute kinds we schedule.
_ACTION_PATTERN = re.compile(r"^\s*(\d+)\s*([FBIW])\s*(\d+)\s*$")
# PyTorch's sub-action form, as _Action.__repr__ writes an OVERLAP_F_B: (0F7;7B3)OVERLAP_F_B.
_PAIR_PATTERN = re.compile(r"^\s*\(([^;()]*);([^;()]*)\)\s*" + OVERLAP_F_B + r"\s*$")


class Action(NamedTuple):
    """One compute action: ``stage`` does ``kind`` for ``microbatch``."""

    stage: int
    kind: ActionKind
    microbatch: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.microbatch}"

    @classmethod
    def parse(cls, text: str) -> Action:
        """Read ``"2F0"`` back into ``Action(2, ActionKind.FORWARD, 0)``; raise ValueError
        otherwise."""
        match = _ACTION_PATTERN.match(text)
        if match is None:
            raise ValueError(
                f"cannot read action {text!r}: expected STAGE KIND MICROBATCH such as 2F0, "
                f"with KIND one of {', '.join(COMPUTE_KINDS)}"
            )
        stage, kind, microbatch = match.groups()
        return cls(int(stage), ActionKind(kind), int(microbatch))

    @property
    def sub_actions(self) -> tuple[Action]:
        """The plain actions this entry runs: itself (see ``OverlapPair.sub_actions``)."""
        return (self,)


class OverlapPair(NamedTuple):
    """A forward and a backward that run at the same time on one rank.

    DualPipe (DeepSeek-V3 technical report, arXiv:2412.19437, Sec. 3.2.1) pairs the forward
    of one microbatch with the backward of another so that the communication of each hides
    behind the computation of the other; PyTorch writes the pair ``(0F7;7B3)OVERLAP_F_B``.
    Neither half may need the other, and the rank needs the inputs of both before it starts
    the pair. The simulator charges the pair less than the sum of its halves
    (``CostModel.overlap``) and records it as its two halves.
    """

    forward: Action
    backward: Action
    kind = OVERLAP_F_B  # a class constant, not a field: the pair reads like an Action

    def __str__(self) -> str:
        return f"({self.forward};{self.backward}){OVERLAP_F_B}"

    @property
    def sub_actions(self) -> tuple[Action, Action]:
        return (self.forward, self.backward)


AnyAction = Action | OverlapPair


def parse_action(text: str) -> AnyAction:
    """Read ``"2F0"`` or ``"(0F7;7B3)OVERLAP_F_B"``; raise ValueError otherwise.

    A pair holds a forward first and then a full or input-only backward, as PyTorch
    writes them.
    """
    match = _PAIR_PATTERN.match(text)
    if match is None:
        if "(" in text or OVERLAP_F_B in text:
            raise ValueError(f"cannot read {text!r}: an overlapped pair is written "
                             f"(FORWARD;BACKWARD){OVERLAP_F_B}, e.g. (0F7;7B3){OVERLAP_F_B}")
        return Action.parse(text)
    forward, backward = (Action.parse(part) for part in match.groups())
    if forward.kind != FORWARD or backward.kind not in (FULL_BACKWARD, BACKWARD_INPUT):
        raise ValueError(f"cannot read {text!r}: an overlapped pair holds a forward, then a "
                         f"backward (B or I), e.g. (0F7;7B3){OVERLAP_F_B}")
    return OverlapPair(forward, backward)


@dataclass(frozen=True, eq=False)
class Schedule:
    """What every rank does, in order, and where every stage lives.

    ``actions[rank]`` is that rank's ordered tuple of actions (``Action``, or an
    ``OverlapPair`` that runs two at once). ``stage_to_rank[s]`` is the rank holding stage
    ``s``: ``s % pp_size`` for looped (interleaved) placement, ``r`` and ``2P-1-r`` on rank
    ``r`` for V-shaped placement (ZB-V, DualPipe-V). The words are kept apart: ``pp_size``
    (P) counts ranks, ``num_stages`` (P x V) counts model stages.

    ``update_every`` is None for synchronous schedules: gradients of all microbatches are
    accumulated and one optimizer step follows the flush. For asynchronous schedules
    (PipeDream, PipeDream-2BW) there is no flush: each stage updates its own weights after
    every ``update_every`` of its backwards, and each microbatch keeps the weight version
    its forward saw (weight stashing). ``microbatches_per_step`` groups microbatches into
    training steps so metrics of synchronous and asynchronous runs line up.

    Microbatches are counted two ways, kept apart by name: ``num_microbatches`` (m) is per
    training step, as the builders, ``pplab train --microbatches`` and meta.json count them;
    ``total_microbatches`` counts every microbatch the actions name, all steps together
    (ids 0..total - 1; ``step_of`` says which step each belongs to). They differ only for a
    schedule of several steps (PipeDream's whole run, ``repeat_steps``).
    """

    actions: Mapping[int, tuple[AnyAction, ...]]
    stage_to_rank: tuple[int, ...]
    total_microbatches: int
    name: str = "custom"
    update_every: int | None = None
    microbatches_per_step: int | None = None
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "actions", {int(r): tuple(a) for r, a in sorted(self.actions.items())}
        )
        object.__setattr__(self, "stage_to_rank", tuple(int(r) for r in self.stage_to_rank))
        if self.microbatches_per_step is None:
            object.__setattr__(self, "microbatches_per_step", self.total_microbatches)

    @property
    def num_microbatches(self) -> int:
        """Microbatches per training step (m), as the builders and meta.json count them."""
        return self.microbatches_per_step

    @property
    def num_stages(self) -> int:
        """Model stages, P x V: every chunk of every rank counts."""
        return len(self.stage_to_rank)

    @property
    def pp_size(self) -> int:
        """Pipeline depth P: the ranks of one pipeline."""
        return len(self.actions)

    @property
    def num_chunks(self) -> int:
        """Model chunks per rank, V (1 unless the placement is interleaved or V-shaped)."""
        return max(1, self.num_stages // max(1, self.pp_size))

    @property
    def is_async(self) -> bool:
        return self.update_every is not None

    @property
    def num_steps(self) -> int:
        return -(-self.total_microbatches // self.microbatches_per_step)

    def stages_of(self, rank: int) -> list[int]:
        """The stages that live on ``rank``, in increasing order."""
        return [s for s, r in enumerate(self.stage_to_rank) if r == rank]

    def step_of(self, microbatch: int) -> int:
        return microbatch // self.microbatches_per_step

    def all_actions(self) -> Iterable[tuple[int, Action]]:
        """Every plain action with its rank, in order; an overlapped pair gives both halves."""
        for rank, actions in self.actions.items():
            for entry in actions:
                for action in entry.sub_actions:
                    yield rank, action

    def pretty(self) -> str:
        """One line per rank, actions in order: the way a learner first reads a schedule.

        Cells are as wide as the widest plain action; an overlapped pair takes the room it
        needs rather than widening every cell.
        """
        width = max((len(str(a)) for _, a in self.all_actions()), default=2)
        lines = []
        for rank, actions in self.actions.items():
            cells = " ".join(str(a).rjust(width) for a in actions)
            lines.append(f"rank {rank}: {cells}")
        return "\n".join(lines)


def needs(action: AnyAction, num_stages: int) -> tuple[tuple[int, ActionKind, int], ...]:
    """What must have finished before ``action`` can run, as (stage, kind, microbatch).

    A forward needs the previous stage's forward (its activation). A backward, full or
    input-only, needs this stage's own forward and the next stage's input gradient; the last
    stage's backward starts from the loss. A weight gradient needs the input-gradient pass of
    the same microbatch, which leaves behind what it reads. A full backward ``B`` finishes
    both ``I`` and ``W`` of its microbatch. An overlapped pair needs what its two halves need.
    """
    if isinstance(action, OverlapPair):
        return tuple(dict.fromkeys(need for half in action.sub_actions
                                   for need in needs(half, num_stages)))
    stage, kind, mb = action
    if kind == FORWARD:
        return ((stage - 1, FORWARD, mb),) if stage > 0 else ()
    if kind in (FULL_BACKWARD, BACKWARD_INPUT):
        own_forward = (stage, FORWARD, mb)
        if stage == num_stages - 1:
            return (own_forward,)
        return (own_forward, (stage + 1, BACKWARD_INPUT, mb))
    return ((stage, BACKWARD_INPUT, mb),)


def finishes(action: AnyAction) -> tuple[tuple[int, ActionKind, int], ...]:
    """The (stage, kind, microbatch) facts that hold once ``action`` is done."""
    if isinstance(action, OverlapPair):
        return finishes(action.forward) + finishes(action.backward)
    if action.kind == FULL_BACKWARD:
        return (
            (action.stage, FULL_BACKWARD, action.microbatch),
            (action.stage, BACKWARD_INPUT, action.microbatch),
            (action.stage, BACKWARD_WEIGHT, action.microbatch),
        )
    return ((action.stage, action.kind, action.microbatch),)


class Message(NamedTuple):
    """An activation or an input gradient that one rank hands to another."""

    sender: int  # rank
    receiver: int  # rank
    fact: tuple[int, ActionKind, int]  # what it carries, as ``needs`` names it
    target: int  # the stage that reads it
    what: str  # "activation" or "gradient"


def message_of(action: Action, stage_to_rank: Sequence[int],
               rank: int | None = None) -> Message | None:
    """What plain ``action`` sends to another rank when it finishes, or None.

    The one rule for who sends to whom, which the simulator, the engine and the calibration
    all read: a forward feeds its activation to stage + 1; an input gradient, of a full
    backward B or of I, goes to stage - 1; W sends nothing. Nothing leaves the first or the
    last stage that way, and a stage living on the sender's own rank (``rank``, by default
    the one holding ``action.stage``) gets its input handed over locally, not sent.
    """
    stage, kind, mb = action
    if kind == FORWARD:
        target, fact, what = stage + 1, (stage, FORWARD, mb), "activation"
    elif kind in (FULL_BACKWARD, BACKWARD_INPUT):
        target, fact, what = stage - 1, (stage, BACKWARD_INPUT, mb), "gradient"
    else:
        return None
    if not 0 <= target < len(stage_to_rank):
        return None
    sender = stage_to_rank[stage] if rank is None else rank
    receiver = stage_to_rank[target]
    return None if receiver == sender else Message(sender, receiver, fact, target, what)


def message_into(action: Action, stage_to_rank: Sequence[int]) -> Message | None:
    """The message plain ``action`` waits for from another rank, or None.

    Its input from the neighbouring stage (``needs``), sent by ``message_of``'s rule: the
    previous stage's activation for a forward, the next stage's input gradient for B or I.
    """
    for stage, kind, mb in needs(action, len(stage_to_rank)):
        if stage != action.stage:
            return message_of(Action(stage, kind, mb), stage_to_rank)
    return None


def weight_versions(schedule: Schedule) -> dict[tuple[int, int], int]:
    """The weight version each (stage, microbatch) runs with, derived from the order.

    A stage's version counts its optimizer updates so far. Synchronous schedules update
    only after the flush, so every microbatch of a step sees the same version (the step
    number). Asynchronous ones update after every ``update_every`` backwards of that
    stage, and a microbatch's backward reuses the version its forward saw (stashing); its
    forward runs on the newest version (PipeDream), or, when ``params["version_lag_steps"]``
    is set, on the version of that many steps before its own (PipeDream-2BW: one).
    """
    versions: dict[tuple[int, int], int] = {}
    lag = schedule.params.get("version_lag_steps")
    if schedule.is_async and lag is not None:
        # PipeDream-2BW (Narayanan et al., ICML 2021, Sec. 3.1): every microbatch of step t
        # runs on the version of step t - lag, not the newest: W(t+1) = W(t) - lr grad f(W(t-1)).
        for _, action in schedule.all_actions():
            step = schedule.step_of(action.microbatch)
            versions[(action.stage, action.microbatch)] = max(0, step - int(lag))
        return versions
    if not schedule.is_async:
        for _, action in schedule.all_actions():
            versions[(action.stage, action.microbatch)] = schedule.step_of(action.microbatch)
        return versions
    for actions in schedule.actions.values():
        backwards_done: dict[int, int] = {}
        for action in (half for entry in actions for half in entry.sub_actions):
            if action.kind == FORWARD:
                done = backwards_done.get(action.stage, 0)
                versions[(action.stage, action.microbatch)] = done // schedule.update_every
            elif action.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
                backwards_done[action.stage] = backwards_done.get(action.stage, 0) + 1
    return versions
