"""The cost model both the simulator and the closed forms read: what work and messages take.

Durations are for one stage holding a rank's whole share of the model, in "cost units"
(F = 1 by default) or, once calibrated from a measured run, in seconds.

    python -c "from pplab.sim.cost_model import CostModel; \
    print(CostModel.parse('f=1,b=2,comm=0.1'))"
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pplab.limits import (
    MAX_BANDWIDTH,
    MAX_COST,
    MAX_MESSAGE_BYTES,
    MAX_MICROBATCHES,
    MAX_STAGES,
    check_count,
    check_finite_number,
)
from pplab.schedules.actions import (
    BACKWARD_INPUT,
    BACKWARD_WEIGHT,
    COMPUTE_KINDS,
    FORWARD,
    FULL_BACKWARD,
    Schedule,
)

# Short names accepted by CostModel.parse; "comm" is the latency of one message.
_PARSE_KEYS = {
    "f": "forward", "b": "backward", "i": "backward_input", "w": "backward_weight",
    "comm": "latency", "lat": "latency", "bw": "bandwidth", "bytes": "message_bytes",
    "opt": "optimizer", "ovl": "overlap", "overlap": "overlap",
    "val": "validation", "validation": "validation",
}
# The optimizer's global state is one float64 (the sum of squared gradients): its messages
# are latency-bound (pplab.engine.optimizer_sync sends the same).
STATE_BYTES = 8


@dataclass(frozen=True)
class CostModel:
    """Durations of one stage's work and of one message between ranks.

    ``forward`` and the backward figures are for one stage holding a rank's whole share of
    the model. Interleaved schedules cut that share into V chunks, each costing 1/V, so one
    CostModel compares schedules of the same model fairly. ``stage_scale`` multiplies the
    cost of individual stages (one factor per stage, or per rank for multi-chunk
    placements) to model unequal stages.

    ``overlap`` (0 to 1) is how much of the shorter half of an overlapped forward-backward
    pair (``(0F7;7B3)OVERLAP_F_B``, DualPipe-V) hides behind the longer one: the pair takes
    ``max(F, B) + (1 - overlap) * min(F, B)``. 0, the default, charges the sum of the halves,
    as if nothing overlapped; 1 charges only the longer half. DeepSeek-V3 (arXiv:2412.19437,
    Sec. 3.2.1) overlaps the two to hide each one's communication behind the other's compute;
    how much that saves depends on the hardware, hence a knob rather than a constant.

    ``stage_costs``, when given, holds one ``(F, B, I, W)`` per model stage, each that
    stage's own duration, and replaces the figures above times the stage factors: a model
    calibrated from a measured run (``pplab.calibration``) knows every stage's costs, and
    the last stage's loss makes its forward dearer relative to its backward than the
    others', which one factor per stage cannot say.

    ``optimizer`` is one rank's optimizer step, ``validation`` one rank's check of an
    optimistic step against the full state (post-validation, Qi et al., ICLR 2024,
    arXiv:2401.10241, Sec. 4); the state itself travels in messages of
    ``state_message_time``. Where they fall between steps is ``pplab.sim.optimizer_steps``'s.

    ``held_growth``, when given, is one ``(F, B, I, W)`` relative growth of an action's
    computation per microbatch of activations its rank holds beyond ``held_free`` when it
    starts (``held_factor``; what a rank holds is ``hold``'s rule): a working set past the
    caches makes GPipe's actions dearer than 1F1B's on a CPU (``pplab.calibration.variation``
    measures it).
    """

    forward: float = 1.0
    backward: float = 2.0
    backward_input: float = 1.0
    backward_weight: float = 1.0
    latency: float = 0.0
    bandwidth: float | None = None
    message_bytes: float = 0.0
    optimizer: float = 0.0
    stage_scale: tuple[float, ...] | None = None
    link_scale: tuple[float, ...] | None = None
    overlap: float = 0.0
    stage_costs: tuple[tuple[float, float, float, float], ...] | None = None
    validation: float = 0.0
    held_growth: tuple[float, float, float, float] | None = None
    held_free: int = 0

    def __post_init__(self) -> None:
        # Bounded, not only finite: a duration of 1e300 sums to infinity over a schedule, and
        # bytes beyond 2**63 wrap negative in the Event table's int64 column.
        for name in ("forward", "backward", "backward_input", "backward_weight", "latency",
                     "optimizer", "validation"):
            check_finite_number(f"cost {name}", getattr(self, name), MAX_COST)
        check_finite_number("cost message_bytes", self.message_bytes, MAX_MESSAGE_BYTES)
        if check_finite_number("cost overlap", self.overlap, MAX_COST) > 1:
            raise ValueError(f"cost overlap is the share of the shorter half of a pair that "
                             f"hides, between 0 and 1; got {self.overlap:g}")
        if self.bandwidth is not None:
            check_finite_number("cost bandwidth", self.bandwidth, MAX_BANDWIDTH, positive=True)
        for name, positive in (("stage_scale", True), ("link_scale", False)):
            factors = getattr(self, name)
            if factors is None:
                continue
            factors = tuple(factors)
            if not factors:
                raise ValueError(f"{name} needs at least one factor")
            check_count(f"{name} factors", len(factors), MAX_STAGES)
            factors = tuple(check_finite_number(f"{name} factor", x, MAX_COST, positive=positive)
                            for x in factors)
            object.__setattr__(self, name, factors)
        if self.stage_costs is not None:
            rows = tuple(tuple(row) for row in self.stage_costs)
            check_count("stage_costs stages", len(rows), MAX_STAGES)
            if not rows or any(len(row) != len(COMPUTE_KINDS) for row in rows):
                raise ValueError("stage_costs needs one (F, B, I, W) per stage")
            object.__setattr__(self, "stage_costs", tuple(
                tuple(check_finite_number("stage cost", x, MAX_COST) for x in row)
                for row in rows))
        if self.held_growth is not None:
            growth = tuple(self.held_growth)
            if len(growth) != len(COMPUTE_KINDS):
                raise ValueError(f"held_growth needs one (F, B, I, W); got {len(growth)} values")
            object.__setattr__(self, "held_growth", tuple(
                check_finite_number("held growth", x, MAX_COST) for x in growth))
        if isinstance(self.held_free, bool) or not isinstance(self.held_free, int) \
                or self.held_free < 0:
            raise ValueError(f"held_free is a count of microbatches; got {self.held_free!r}")
        check_count("held_free microbatches", self.held_free, MAX_MICROBATCHES)

    @classmethod
    def parse(cls, text: str) -> CostModel:
        """Read ``"f=1,b=2,i=1,w=1,comm=0"`` (also ``lat=``, ``bw=``, ``bytes=``, ``opt=``,
        ``ovl=`` for the overlap of a forward-backward pair, ``val=`` for a post-validation).

        ``scale=1:1.5:1`` gives per-stage factors, ``links=1:4:1`` per-boundary factors of the
        message time. Raise ValueError on anything else.
        """
        values: dict[str, object] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key = key.strip().lower()
            if not sep or not raw.strip():
                raise ValueError(f"cost item {item!r} is not KEY=NUMBER (e.g. f=1,b=2,comm=0.1)")
            if key in ("scale", "links"):
                try:
                    factors = tuple(float(x) for x in raw.split(":"))
                except ValueError:
                    raise ValueError(f"cost {key} {raw!r} is not numbers joined by ':'") from None
                values["stage_scale" if key == "scale" else "link_scale"] = factors
                continue
            if key not in _PARSE_KEYS:
                known = ", ".join(list(_PARSE_KEYS) + ["scale", "links"])
                raise ValueError(f"unknown cost key {key!r}; use {known}")
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(f"cost {key}={raw!r} is not a number") from None
            values[_PARSE_KEYS[key]] = number
        return cls(**values)

    def to_dict(self) -> dict[str, object]:
        """Plain values for run metadata."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("stage_scale", "link_scale"):
            if out[name] is not None:
                out[name] = list(out[name])
        if not self.validation:
            del out["validation"]  # metadata without post-validation reads as before
        if self.stage_costs is None:
            del out["stage_costs"]  # metadata of uncalibrated models reads as before
        else:
            out["stage_costs"] = [list(row) for row in self.stage_costs]
        if self.held_growth is None:
            del out["held_growth"], out["held_free"]  # nor of models without it
        else:
            out["held_growth"] = list(self.held_growth)
        return out

    def held_factor(self, kind: str, held: int) -> float:
        """How many times its typical computation ``kind`` takes when its rank holds ``held``
        microbatches of activations as it starts."""
        if self.held_growth is None or held <= self.held_free:
            return 1.0
        return 1.0 + self.held_growth[COMPUTE_KINDS.index(kind)] * (held - self.held_free)

    def transfer_time(self) -> float:
        """Time one activation or gradient message occupies a link (bytes / bandwidth)."""
        return 0.0 if self.bandwidth is None else self.message_bytes / self.bandwidth

    def message_time(self) -> float:
        """Latency plus transfer time of one activation or gradient message."""
        return self.latency + self.transfer_time()

    def state_message_time(self) -> float:
        """Latency plus transfer time of one message of the optimizer's global state."""
        return self.latency + (0.0 if self.bandwidth is None else STATE_BYTES / self.bandwidth)

    def overlapped_time(self, forward: float, backward: float) -> float:
        """How long an overlapped pair of halves taking ``forward`` and ``backward`` runs."""
        return max(forward, backward) + (1.0 - self.overlap) * min(forward, backward)

    def link_factors(self, num_stages: int) -> list[float]:
        """Multiplier of the message time across each of the ``num_stages - 1`` boundaries."""
        if self.link_scale is None:
            return [1.0] * max(num_stages - 1, 0)
        if len(self.link_scale) != num_stages - 1:
            raise ValueError(
                f"link_scale has {len(self.link_scale)} factors; {num_stages} stages have "
                f"{num_stages - 1} links between them")
        return list(self.link_scale)

    def stage_factors(self, schedule: Schedule) -> list[float]:
        """Multiplier of the per-stage figures for every stage of ``schedule``.

        A stage is its rank's share of the model divided by the stages on that rank (1/V
        when interleaved), so a rank's total work is the same whatever its placement; a rank
        that holds no stage (an empty CSV row) changes nothing.
        """
        num_stages, pp_size = schedule.num_stages, schedule.pp_size
        stages_on = [0] * pp_size
        for rank in schedule.stage_to_rank:
            stages_on[rank] += 1
        share = [1.0 / stages_on[schedule.stage_to_rank[s]] for s in range(num_stages)]
        scale = self.stage_scale
        if scale is None:
            return share
        if len(scale) == num_stages:
            return [part * s for part, s in zip(share, scale, strict=True)]
        if len(scale) == pp_size:
            return [share[s] * scale[schedule.stage_to_rank[s]] for s in range(num_stages)]
        raise ValueError(
            f"stage_scale has {len(scale)} factors; the schedule has {num_stages} stages "
            f"on {pp_size} ranks")

    def stage_durations(self, schedule: Schedule) -> list[dict[str, float]]:
        """How long each kind of work (F, B, I, W) takes on every stage of ``schedule``."""
        if self.stage_costs is not None:
            if len(self.stage_costs) != schedule.num_stages:
                raise ValueError(f"stage_costs has {len(self.stage_costs)} stages; the "
                                 f"schedule has {schedule.num_stages}")
            return [dict(zip(COMPUTE_KINDS, row, strict=True)) for row in self.stage_costs]
        per_kind = {FORWARD: self.forward, FULL_BACKWARD: self.backward,
                    BACKWARD_INPUT: self.backward_input, BACKWARD_WEIGHT: self.backward_weight}
        return [{kind: time * factor for kind, time in per_kind.items()}
                for factor in self.stage_factors(schedule)]


def hold(held: set, action) -> None:
    """Update ``held``, the ``(stage, microbatch)`` pairs whose activations a rank keeps, as
    ``action`` runs: a forward keeps them until its backward ends (B, or W for a split one,
    which reads what I left), the rule of ``pplab.timeline.peak_held``."""
    if action.kind == FORWARD:
        held.add((action.stage, action.microbatch))
    elif action.kind in (FULL_BACKWARD, BACKWARD_WEIGHT):
        held.discard((action.stage, action.microbatch))
