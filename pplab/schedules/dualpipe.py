"""DualPipe-V: DeepSeek-V3's bidirectional pipeline folded into a V, with overlapped pairs.

DualPipe (DeepSeek-V3 technical report, Sec. 3.2.1) feeds microbatches into both ends of the
pipeline at once and, in the steady state, runs the forward of one microbatch together with
the backward of another: each one's communication (all-to-all in a mixture-of-experts
model, here the pipeline messages) hides behind the other's computation. DualPipe-V is the
"cut-in-half" form from DeepSeek's DualPipe code: the V-shaped placement of ZB-V (rank r
holds stages r and 2P-1-r), so one copy of the weights serves both directions. A rank's
order has eight phases:

1. forwards of its first chunk, two per hop to the last rank;
2. forwards of both chunks, alternating;
3. zero-bubble warm-up of the second chunk: I, a pending W, F;
4. the main phase: overlapped pairs, first chunk's forward with the second chunk's
   backward, then the reverse (the last rank runs its very first pair apart);
5. a backward of the second chunk, then a pair;
6. backwards of both chunks; half-way through they split into I and W;
7. the pending W's between the first chunk's last backwards;
8. the W's that are left.

It needs at least 2P microbatches to reach its main phase. ``CostModel.overlap`` sets how
much shorter a pair runs than its two halves.

    pplab simulate --schedule dualpipe-v --pp 4 --microbatches 8 --cost f=1,b=2,i=1,w=1,ovl=0.5
"""

from __future__ import annotations

from collections import deque

from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    FORWARD,
    FULL_BACKWARD,
    Action,
    AnyAction,
    OverlapPair,
    Schedule,
)
from pplab.schedules.registry import register
from pplab.schedules.zero_bubble_v import v_shape, v_stages


@register(
    "dualpipe-v",
    paper="DualPipeV: the \"cut-in-half\" V of github.com/deepseek-ai/DualPipe (after Sea AI "
          "Lab's cut-in-half), as PyTorch's ScheduleDualPipeV orders it; DualPipe from the "
          "DeepSeek-V3 Technical Report, DeepSeek-AI, 2024, arXiv:2412.19437, Sec. 3.2.1",
    min_chunks=2, max_chunks=2, actions_per_microbatch=3,
)
def dualpipe_v(pp_size: int, num_microbatches: int, num_chunks: int = 2) -> Schedule:
    """Bidirectional V-shaped pipeline whose steady state overlaps a forward with a backward."""
    if num_microbatches < 2 * pp_size:
        raise ValueError(f"dualpipe-v needs at least as many microbatches as its {2 * pp_size} "
                         f"stages (2 per rank); got {num_microbatches}")
    orders = {rank: _DualPipeRank(rank, pp_size).order(num_microbatches)
              for rank in range(pp_size)}
    return Schedule(orders, v_shape(pp_size), num_microbatches, name="dualpipe-v")


class _DualPipeRank:
    """Builds one rank's order; each chunk takes its microbatches in order."""

    def __init__(self, rank: int, pp_size: int) -> None:
        self.rank, self.pp_size = rank, pp_size
        self.down, self.up = v_stages(rank, pp_size)
        self.next_forward = {self.down: 0, self.up: 0}
        self.next_backward = {self.down: 0, self.up: 0}
        self.pending_weights: deque[Action] = deque()
        self.actions: list[AnyAction] = []

    def forward(self, stage: int) -> Action:
        action = Action(stage, FORWARD, self.next_forward[stage])
        self.next_forward[stage] += 1
        return action

    def backward(self, stage: int, split: bool = False) -> Action:
        """The next backward of ``stage``: in full, or its I with the W left pending."""
        action = Action(stage, BACKWARD_INPUT if split else FULL_BACKWARD,
                        self.next_backward[stage])
        self.next_backward[stage] += 1
        if split:
            self.pending_weights.append(Action(stage, BACKWARD_WEIGHT, action.microbatch))
        return action

    def run(self, *actions: AnyAction) -> None:
        self.actions.extend(actions)

    def run_pending_weight(self) -> None:
        if self.pending_weights:
            self.run(self.pending_weights.popleft())

    def order(self, num_microbatches: int) -> list[AnyAction]:
        rank, pp_size, down, up = self.rank, self.pp_size, self.down, self.up
        last_rank = rank == pp_size - 1
        for _ in range(2 * (pp_size - rank - 1)):                                  # 1
            self.run(self.forward(down))
        for _ in range(rank + 1):                                                  # 2
            self.run(self.forward(down), self.forward(up))
        for _ in range(pp_size - rank - 1):                                        # 3
            self.run(self.backward(up, split=True))
            self.run_pending_weight()
            self.run(self.forward(up))
        for pair in range(num_microbatches - 2 * pp_size + rank + 1):              # 4
            if pair == 0 and last_rank:
                # The bottom of the V: overlapping here would only delay the turn-around.
                self.run(self.forward(down), self.backward(up))
            else:
                self.run(OverlapPair(self.forward(down), self.backward(up)))
            self.run(OverlapPair(self.forward(up), self.backward(down)))
        for _ in range(pp_size - rank - 1):                                        # 5
            self.run(self.backward(up), OverlapPair(self.forward(up), self.backward(down)))
        split = False                                                              # 6
        for index in range(rank + 1):
            # Half-way through, the backwards split so that their W's can fill the drain;
            # odd and even ranks switch one chunk apart.
            if index == (rank + 1) // 2 and rank % 2 == 1:
                split = True
            self.run(self.backward(up, split))
            if index == (rank + 1) // 2 and rank % 2 == 0:
                split = True
            self.run(self.backward(down, split))
        for _ in range(pp_size - rank - 1):                                        # 7
            self.run_pending_weight()
            self.run(self.backward(down, split))
        for _ in range(rank + 1):                                                  # 8
            self.run_pending_weight()
        return self.actions
