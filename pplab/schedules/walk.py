"""The one walk of a schedule: every rank runs its work in order, waiting only for data.

What it teaches: a schedule holds no time; time comes out of walking it. Each rank takes its
next action as soon as what the action ``needs`` is usable on that rank: its own stages'
results at once, another rank's once the message (``message_of``) has arrived. A rank that
lacks something parks on that one fact and is woken when it appears, so a walk is about
linear in the actions, and what is left parked at the end is a deadlock. Every walk of
pplab is this one, with other durations or another speed:

* the simulator (``pplab.sim.simulator``): durations from the cost model; each rank on a
  core of its own, so every busy rank progresses at rate 1;
* ranks sharing C cores (``pplab.sim.sharing``): while n ranks compute, each progresses at
  min(1, C / n): time advances from one completion, arrival or end of overhead to the next;
* validation (``pplab.schedules.validate``): zero durations, and the parked ranks name the
  deadlock;
* the search (``pplab.sim.search``): a rank's next action is picked by a *chooser* at the
  moment the rank falls free, not read from a list.

The walk lives beside the action language, not in ``pplab.sim``, because validation (this
package) needs it and ``schedules`` must import nothing above it; it knows no cost model,
only the durations it is handed, and leaves the drawing of events to its caller.

    python -c "from pplab.schedules import schedule_from_csv_text as csv; \\
from pplab.schedules.walk import Walk, plain_program; s = csv('0F0,0B0\\n1B0,1F0\\n'); \\
print(Walk(s.stage_to_rank, plain_program(s)).run().stuck())"   # {0: 1, 1: 0}: deadlock
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from pplab.schedules.actions import AnyAction, Message, Schedule, finishes, message_of, needs

Fact = tuple  # (stage, kind, microbatch), as ``needs`` and ``finishes`` name them
_CLOSE = 1e-12  # times and amounts of work this close are the same instant


class Item(NamedTuple):
    """One piece of a rank's work: ``entry`` (an action or an overlapped pair), or None for
    work that is no action (an optimizer step, a validation).

    ``work`` is how long it takes on a core of its own, of which ``lead`` comes before its
    computation starts (overhead); ``note`` is the caller's, handed back when it finishes.
    ``waits`` are facts it needs besides its entry's, and ``gives`` the facts it makes, each
    ``(fact, rank, delay)``: usable on that rank ``delay`` after the item ends. Steps of
    several-step schedules are kept apart by such items (``pplab.sim.optimizer_steps``): the
    optimizer's state is a fact like any other, and travels as a message.
    """

    entry: AnyAction | None
    work: float = 0.0
    lead: float = 0.0
    note: object = None
    waits: tuple = ()
    gives: tuple = ()


Chooser = Callable[["Walk", int], Item | None]  # (walk, rank) -> the rank's next item, or None
Program = Sequence[Item] | Chooser


def plain_program(schedule: Schedule) -> dict[int, list[Item]]:
    """Every rank's entries in order, taking no time: the walk that validation runs."""
    return {rank: [Item(entry) for entry in entries]
            for rank, entries in schedule.actions.items()}


def _no_cost(rank: int, half, message: Message, end: float) -> float:
    return end


class Walk:
    """One walk over ``programs``: for each rank a list of ``Item`` or a ``Chooser``.

    ``rate(n)`` is how fast each busy rank progresses while n ranks are busy; None gives
    every rank a core of its own (rate 1), and an item's end is then known the moment it
    starts, so its results are stamped with their future times at once: a chooser deciding
    later sees what is on its way. ``deliver(rank, half, message, end)`` returns when a
    message sent at ``end`` arrives (default: at once). ``on_finish(rank, item, began,
    compute_began, end)`` is told each item's times, in each rank's order.

    A chooser is asked for a rank's next item whenever the rank is free and something new
    may have reached it (its own last item ended, a message arrived); it returns an item
    whose needs are usable now, or None to wait. Ranks free at the same instant are served
    in rank order.
    """

    def __init__(self, stage_to_rank: Sequence[int], programs: Mapping[int, Program],
                 rate: Callable[[int], float] | None = None,
                 deliver: Callable[[int, object, Message, float], float] | None = None,
                 on_finish: Callable[[int, Item, float, float, float], None] | None = None):
        self.stage_to_rank = tuple(stage_to_rank)
        self.num_stages = len(self.stage_to_rank)
        self.programs = dict(programs)
        self._choosers = {rank for rank, program in self.programs.items() if callable(program)}
        self.rate = rate
        self.deliver = deliver or _no_cost
        self.on_finish = on_finish
        self.now = 0.0
        self.position = dict.fromkeys(self.programs, 0)
        self._known: dict[tuple[Fact, int], float] = {}  # (fact, rank) -> usable there from
        self._parked: dict[tuple[Fact, int], list[int]] = {}
        self._wakes = [(0.0, rank) for rank in sorted(self.programs)]  # (time, rank) heap
        self._free_at = dict.fromkeys(self.programs, 0.0)  # own cores: busy until
        # Shared cores: every busy rank progresses at the same rate, so one clock of work
        # done (``_work``) orders all of them; an item ends when it reaches its mark.
        self._work = 0.0
        self._running: dict[int, tuple[Item, float]] = {}  # rank -> (item, began)
        self._ends: list[tuple[float, int]] = []  # (work mark, rank) heap
        self._leads: list[tuple[float, int]] = []  # (work mark, rank): overhead done
        self._compute_began: dict[int, float] = {}
        # Own cores: times are exact sums, a rank starts at the very time its input lands.
        # Shared cores: times come out of divisions by rates, and 1e-12 apart is one instant.
        self._slack = 0.0 if rate is None else _CLOSE

    def usable_at(self, fact: Fact, rank: int) -> float | None:
        """When ``fact`` can be used on ``rank``; None while nothing has promised it."""
        return self._known.get((fact, rank))

    def stuck(self) -> dict[int, int]:
        """Ranks with listed work left after the walk, with the position they stopped at."""
        return {rank: self.position[rank] for rank, program in self.programs.items()
                if not callable(program) and self.position[rank] < len(program)}

    def run(self) -> Walk:
        """Walk until no rank can do more; ``stuck()`` then says who waits forever."""
        wakes, ends, leads = self._wakes, self._ends, self._leads
        while wakes or ends:
            rate = self.rate(len(self._running)) if self._running else 1.0
            # The next item to end or to finish its overhead (a lead runs only with its item).
            mark = min(ends[0][0], leads[0][0]) if leads else ends[0][0] if ends else None
            done = float("inf") if mark is None else self.now + (mark - self._work) / rate
            if wakes and wakes[0][0] < done - _CLOSE:  # completions first at a tie
                when, rank = heapq.heappop(wakes)
                self._advance(max(when, self.now), rate)
                self._activate(rank)
                continue
            self._advance(done, rate)
            limit = self._work + _CLOSE * max(1.0, self._work)
            while leads and leads[0][0] <= limit:
                self._compute_began[heapq.heappop(leads)[1]] = self.now
            finished = []
            while ends and ends[0][0] <= limit:
                finished.append(heapq.heappop(ends)[1])
            for rank in sorted(finished):
                item, began = self._running.pop(rank)
                self._finish(rank, item, began, self._compute_began.pop(rank, began), self.now)
                heapq.heappush(wakes, (self.now, rank))
        return self

    def _advance(self, when: float, rate: float) -> None:
        if self._running:
            self._work += (when - self.now) * rate
        self.now = when

    def _activate(self, rank: int) -> None:
        """Start as much of ``rank``'s work as can start now; park it or set a wake-up."""
        if rank in self._running or self._free_at[rank] > self.now:
            return  # busy: it is woken again when its item ends
        program = self.programs[rank]
        while True:
            if callable(program):
                item = program(self, rank)
                if item is None:
                    return
            elif self.position[rank] < len(program):
                item = program[self.position[rank]]
            else:
                return
            start = self._start_time(rank, item, chosen=callable(program))
            if start is None:
                return
            if start > self.now + self._slack:
                heapq.heappush(self._wakes, (start, rank))
                return
            self.position[rank] += 1
            if not self._begin(rank, item):
                return

    def _start_time(self, rank: int, item: Item, chosen: bool) -> float | None:
        """When every need of ``item`` is usable on ``rank``; None, parked, if one is unknown."""
        latest = self.now
        own = needs(item.entry, self.num_stages) if item.entry is not None else ()
        for need in (*own, *item.waits):
            when = self._known.get((need, rank))
            if when is None or (chosen and when > self.now + _CLOSE):
                if chosen:
                    raise ValueError(f"the walk's chooser picked {item.entry} on rank {rank} "
                                     f"at {self.now:g} before its need {need} reached it")
                self._parked.setdefault((need, rank), []).append(rank)
                return None
            latest = max(latest, when)
        return latest

    def _begin(self, rank: int, item: Item) -> bool:
        """Start ``item`` now; True if ``rank`` is free again at once (the item took no time)."""
        now = self.now
        if self.rate is None:
            end = now + item.work
            self._free_at[rank] = end
            self._finish(rank, item, now, now + item.lead, end)
            if end > now:
                heapq.heappush(self._wakes, (end, rank))
                return False
            return True
        self._running[rank] = (item, now)
        heapq.heappush(self._ends, (self._work + item.work, rank))
        if item.lead > 0:
            heapq.heappush(self._leads, (self._work + item.lead, rank))
        else:
            self._compute_began[rank] = now
        return False

    def _finish(self, rank: int, item: Item, began: float, compute_began: float,
                end: float) -> None:
        if self.on_finish is not None:
            self.on_finish(rank, item, began, compute_began, end)
        for fact, receiver, delay in item.gives:
            self._learn(fact, receiver, end + delay)
        if item.entry is None:
            return
        for fact in finishes(item.entry):
            self._learn(fact, self.stage_to_rank[fact[0]], end)
        for half in item.entry.sub_actions:
            message = message_of(half, self.stage_to_rank, rank)
            if message is not None:
                self._learn(message.fact, message.receiver,
                            self.deliver(rank, half, message, end))

    def _learn(self, fact: Fact, rank: int, when: float) -> None:
        """``fact`` is usable on ``rank`` from ``when``: wake who parked on it, and a
        chooser rank, which may now pick something else."""
        key = (fact, rank)
        self._known[key] = when
        waiting = self._parked.pop(key, None)
        if rank in self._choosers:
            waiting = [*(waiting or ()), rank]
        if waiting:
            wake = (max(when, self.now),)
            for parked in waiting:
                heapq.heappush(self._wakes, (*wake, parked))
