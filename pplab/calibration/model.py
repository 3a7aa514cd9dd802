"""What a calibration holds: the costs one measured run revealed, in seconds, as plain data.

A ``Calibration`` is fitted once from a run (``pplab.calibration.fit``) and kept beside it
(``calibration.json``). It is written in the words of the machine, not of the schedule:
what one layer's forward and backward take, what the last stage's head adds, what a rank
spends around each action (sending, posting a receive, Python), how long a message takes
from the end of the action that made it to the start of the one that needs it, what the
step's tail (the flush, the optimizer) costs, and how many cores the ranks really had. That
is what lets it predict other schedules, microbatch counts and depths than its own run's
(``pplab.calibration.costs``).

    python -c "from pplab.calibration import calibration_for; from pplab.timeline import \
load_run; print(calibration_for(load_run('data/runs/1f1b-p2m8')).describe())"
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from pplab.limits import MAX_MESSAGE_BYTES
from pplab.schedules.actions import COMPUTE_KINDS

FORMAT_VERSION = 5  # bump when a field's meaning changes: older files are then refitted


@dataclass(frozen=True)
class LinkFit:
    """One directed link between pipeline positions, as its messages measured it.

    ``latency`` is the median time from the end of the action that produced a message to
    the moment its receiver, blocked on it, had it (only blocked receives time a message).
    ``replay_latency`` is what the simulator must charge instead, since it counts a rank's
    own per-action overhead after the wait rather than before it (never below 0).
    ``bandwidth`` (bytes/s) is fitted only when the link carried messages of several sizes;
    with one size the whole time is latency and the bandwidth is None.
    """

    src: int
    dst: int
    latency: float
    replay_latency: float
    bandwidth: float | None
    message_bytes: int
    samples: int


@dataclass(frozen=True)
class Contention:
    """More busy ranks than cores (or GPUs): how much the sharing slowed computation.

    ``slots`` is what the machine reported (cores, or GPUs); ``effective_slots`` the number
    of cores that makes the measured durations most consistent under processor sharing (each
    of n busy ranks runs at min(1, slots / n) of its own speed); ``slowdown`` the measured
    compute time over the dedicated time it would have taken alone (1.0: no sharing).
    """

    ranks: int
    slots: int
    device: str = "cpu"
    effective_slots: float | None = None
    slowdown: float = 1.0

    @property
    def shared(self) -> bool:
        return self.ranks > self.slots


@dataclass(frozen=True)
class Measured:
    """What the run itself measured per steady step: the figures a replay is judged by."""

    step_time: float  # median window, first compute start to last optimizer end (s)
    bubble: float  # median idle share of rank-time in that window
    steps: tuple[int, ...]
    times: tuple[float, ...] = ()  # every one of those steps' windows (s), in step order


@dataclass(frozen=True)
class Calibration:
    """The costs fitted from one measured run; see the module docstring.

    ``compute[stage][kind]`` is the dedicated (unshared) median duration of each kind that
    the run executed on that model stage. ``per_layer``, ``first_extra`` and ``last_extra``
    describe the same costs per transformer layer plus what the first stage (embedding) and
    the last (final norm, head and loss) add, for layouts the run did not have.
    ``python_overhead[kind]`` is a rank's time around one action outside computing,
    messages and waiting; ``send_cost`` and ``recv_cost`` the time one send or one posted
    receive keeps its rank. ``tail`` is a step's end on a rank after its last action (the
    flush, data-parallel averaging, the optimizer), for ``tail_layers`` layers on that rank.
    """

    run: str
    steps: tuple[int, ...]
    compute: dict[int, dict[str, float]]
    per_layer: dict[str, float]
    first_extra: dict[str, float]
    last_extra: dict[str, float]
    python_overhead: dict[str, float]
    send_cost: float
    recv_cost: float
    links: tuple[LinkFit, ...]
    collectives: dict[str, LinkFit]
    tail: float
    tail_communication: float  # the part of the tail spent on all-reduces and draining sends
    tail_layers: int
    optimizer: float  # one optimizer step alone (what an asynchronous schedule pays per update)
    layer_split: tuple[int, ...]
    stage_to_rank: tuple[int, ...]
    contention: Contention
    measured: Measured
    # How one action's computation varies around its stage's typical cost: quantiles of
    # measured / typical from 0 to 1 in steps of 1/20 (empty: no spread measured).
    spread: tuple[float, ...] = ()
    # How whole steps vary: quantiles (0 to 1 in steps of 1/20) of each steady step's median
    # action over the typical one, every action of a step slowed or sped together (someone
    # else's job on the machine, a warm cache); empty: one step, nothing to compare.
    step_spread: tuple[float, ...] = ()
    # Actions cost more the more microbatches of activations their rank holds (a working set
    # past the caches): per kind, the relative growth per microbatch held beyond
    # ``held_seen``, the most a rank of this run held at once (its costs already say what
    # holding up to that many costs). ``held_rule`` says where the growth was measured.
    held_growth: dict[str, float] = field(default_factory=dict)
    held_seen: int = 0
    held_rule: str = ""
    split_backward_rule: str = ""  # how I and W were estimated when the run had only B
    # One microbatch's activation as the run's messages carried it (bytes; 0: no message),
    # what splitting a backward costs in proportion to (``pplab.calibration.costs``).
    activation_bytes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    version: int = FORMAT_VERSION

    @property
    def pp_size(self) -> int:
        return max(self.stage_to_rank) + 1

    def link(self, src: int, dst: int) -> LinkFit | None:
        return next((fit for fit in self.links if (fit.src, fit.dst) == (src, dst)), None)

    def describe(self) -> str:
        """A few lines a person can read: costs per stage, links, tail, sharing."""
        lines = [f"calibrated from {self.run}, steps {_steps_text(self.steps)}"]
        for stage, costs in sorted(self.compute.items()):
            parts = ", ".join(f"{kind} {1e3 * value:.2f}" for kind, value in costs.items())
            lines.append(f"  stage {stage}: {parts} ms")
        for fit in self.links:
            bandwidth = "" if fit.bandwidth is None else f", {fit.bandwidth / 1e9:.2f} GB/s"
            lines.append(f"  link {fit.src}->{fit.dst}: {1e3 * fit.latency:.3f} ms per "
                         f"{fit.message_bytes:,}-byte message{bandwidth} ({fit.samples} timed)")
        lines.append(f"  per action: send {1e3 * self.send_cost:.3f} ms, receive post "
                     f"{1e3 * self.recv_cost:.3f} ms, Python "
                     + ", ".join(f"{k} {1e3 * v:.3f}" for k, v in self.python_overhead.items())
                     + " ms")
        lines.append(f"  step tail (flush, optimizer): {1e3 * self.tail:.2f} ms, of which "
                     f"all-reduces and draining sends {1e3 * self.tail_communication:.2f} ms")
        if self.spread:
            lines.append(f"  an action's computation varies {self.spread[2]:.2f}.."
                         f"{self.spread[-3]:.2f} x its stage's typical one (10 % to 90 %, "
                         f"mean {sum(self.spread) / len(self.spread):.3f})")
        if self.step_spread:
            lines.append(f"  whole steps vary {self.step_spread[0]:.2f}.."
                         f"{self.step_spread[-1]:.2f} x the median step's actions")
        if self.held_growth:
            lines.append(f"  activations held: {self.held_rule}")
        sharing = self.contention
        if sharing.shared:
            lines.append(f"  {sharing.ranks} ranks on {sharing.slots} {sharing.device} slots: "
                         f"compute {sharing.slowdown:.2f}x slower than alone, as if on "
                         f"{sharing.effective_slots:.2g} {sharing.device} slots")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Read a calibration written by ``to_json``; ValueError on anything else."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise ValueError(f"not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a calibration of format {FORMAT_VERSION}")
        try:
            return cls(
                run=str(data["run"]),
                steps=tuple(_whole(s) for s in data["steps"]),
                compute={_whole(stage): _kinds(costs) for stage, costs in data["compute"].items()},
                per_layer=_kinds(data["per_layer"]),
                first_extra=_kinds(data["first_extra"], signed=True),
                last_extra=_kinds(data["last_extra"], signed=True),
                python_overhead=_kinds(data["python_overhead"]),
                send_cost=_seconds(data["send_cost"]),
                recv_cost=_seconds(data["recv_cost"]),
                links=tuple(_link(item) for item in data["links"]),
                collectives={str(k): _link(v) for k, v in data["collectives"].items()},
                tail=_seconds(data["tail"]),
                tail_communication=_seconds(data["tail_communication"]),
                tail_layers=_whole(data["tail_layers"]),
                optimizer=_seconds(data["optimizer"]),
                layer_split=tuple(_whole(n) for n in data["layer_split"]),
                stage_to_rank=tuple(_whole(r, low=0) for r in data["stage_to_rank"]),
                contention=_contention(data["contention"]),
                measured=Measured(_seconds(data["measured"]["step_time"]),
                                  _seconds(data["measured"]["bubble"]),
                                  tuple(_whole(s, low=0) for s in data["measured"]["steps"]),
                                  tuple(_seconds(t) for t in data["measured"].get("times", ()))),
                spread=tuple(_seconds(q) for q in data.get("spread", ())),
                step_spread=tuple(_seconds(q) for q in data.get("step_spread", ())),
                held_growth=_kinds(data.get("held_growth", {}), signed=True),
                held_seen=_whole(data.get("held_seen", 0)),
                held_rule=str(data.get("held_rule", "")),
                split_backward_rule=str(data.get("split_backward_rule", "")),
                activation_bytes=_bytes(data.get("activation_bytes", 0)),
                notes=tuple(str(n) for n in data.get("notes", ())),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"a calibration field is missing or malformed: {error}") from None


def _steps_text(steps: tuple[int, ...]) -> str:
    if not steps:
        return "none"
    return f"{steps[0]}..{steps[-1]}" if len(steps) > 1 else str(steps[0])


def _seconds(value: object, signed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if value < 0 and not signed:
        raise ValueError(f"{value!r} is negative")
    return float(value)


def _bytes(value: object) -> int:
    number = _whole(value)
    if number > MAX_MESSAGE_BYTES:
        raise ValueError(f"more bytes than a message may carry ({MAX_MESSAGE_BYTES:,})")
    return number


def _whole(value: object, low: int = 0) -> int:
    number = int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < low:
        raise ValueError(f"{value!r} is not a whole number >= {low}")
    return number


def _kinds(values: dict, signed: bool = False) -> dict[str, float]:
    if any(kind not in COMPUTE_KINDS for kind in values):
        raise ValueError(f"{sorted(values)} are not all kinds of work")
    return {kind: _seconds(value, signed) for kind, value in values.items()}


def _link(item: dict) -> LinkFit:
    bandwidth = item.get("bandwidth")
    return LinkFit(_whole(item["src"], low=-1), _whole(item["dst"], low=-1),
                   _seconds(item["latency"]), _seconds(item["replay_latency"]),
                   None if bandwidth is None else _seconds(bandwidth),
                   _whole(item["message_bytes"]), _whole(item["samples"]))


def _contention(item: dict) -> Contention:
    effective = item.get("effective_slots")
    return Contention(_whole(item["ranks"], low=1), _whole(item["slots"], low=1),
                      str(item.get("device", "cpu")),
                      None if effective is None else _seconds(effective),
                      _seconds(item.get("slowdown", 1.0)))
