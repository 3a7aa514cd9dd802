"""Closed forms for pipeline schedules, each with its source, to hold against the simulator.

The bubble fraction here is bubble time over makespan (the lab's definition: idle over
ranks x makespan), which papers often write relative to the ideal time instead; both are
given. Where a paper's form needs an assumption, the docstring says which, and the tests
check every form against ``pplab.sim.simulator`` on a grid of stages and microbatches. A form
holds in one regime, one flushed step unless it says otherwise (``closed_forms``): the steady
state of overlapping steps under post-validation has its own (``overlapped_bubble_fraction``).

    python -c "from pplab.formulas.pipeline import bubble_fraction; \
    print(bubble_fraction('1f1b', 4, 8))"
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from pplab.formulas.closed_forms import CLOSED_FORMS, OVERLAPPED_FORMS, ClosedForm
from pplab.formulas.zero_bubble import (
    check_closed_form_cost,
    zb_fraction,
    zb_h1_bubble_time,
    zb_h2_bubble_time,
    zb_overlapped_bubble_time,
)
from pplab.schedules.pipedream import DEFAULT_STEPS as DEFAULT_ASYNC_STEPS
from pplab.schedules.registry import build
from pplab.schedules.steps import repeat_steps
from pplab.sim.cost_model import CostModel

__all__ = ["CLOSED_FORMS", "OVERLAPPED_FORMS", "ClosedForm", "ClosedFormResult",
           "bubble_fraction", "bubble_ratio_to_ideal", "closed_form_for",
           "overlapped_bubble_fraction", "peak_activations", "peak_activations_per_rank",
           "zb_h1_bubble_time", "zb_h2_bubble_time", "zb_overlapped_bubble_time"]


_SAME_SHAPE_AS_1F1B = ("gpipe", "1f1b")
_ASYNC = ("pipedream", "pipedream-2bw")
KNOWN = _SAME_SHAPE_AS_1F1B + ("interleaved-1f1b", "zb-h1", "zb-h2", "zb-v", "looped-bfs",
                               "naive") + _ASYNC
# Chunks per rank each family's form is written for: (least, most); 1 for the others.
_CHUNKS = {"interleaved-1f1b": (2, None), "looped-bfs": (2, None), "zb-v": (2, 2)}


def _check_numbers(pp_size: int, num_microbatches: int, num_chunks: int) -> None:
    if pp_size < 1:
        raise ValueError(f"need a pipeline of at least 1 rank, got {pp_size}")
    if num_microbatches < 1:
        raise ValueError(f"need at least 1 microbatch, got {num_microbatches}")
    if num_chunks < 1:
        raise ValueError(f"need at least 1 chunk per rank, got {num_chunks}")


def overlapped_bubble_fraction(schedule_name: str, pp_size: int, num_microbatches: int,
                               num_chunks: int = 1, cost: CostModel | None = None) -> float:
    """Bubble per step in the steady state of overlapping steps (post-validation).

    ZB-H1 and ZB-H2 lose the fill of a flushed step (``zb_overlapped_bubble_time``); GPipe,
    1F1B, interleaved 1F1B, looped BFS and naive keep ``bubble_fraction``'s, their idle time
    lying inside each rank's own step. Other families have none: ValueError.
    """
    if schedule_name not in OVERLAPPED_FORMS:
        raise ValueError(f"no closed form for {schedule_name!r} when steps overlap; known: "
                         f"{', '.join(OVERLAPPED_FORMS)}")
    if schedule_name not in ("zb-h1", "zb-h2"):
        return bubble_fraction(schedule_name, pp_size, num_microbatches, num_chunks, cost)
    _check_numbers(pp_size, num_microbatches, num_chunks)
    bubble_fraction(schedule_name, pp_size, num_microbatches, num_chunks, cost)  # its checks
    cost = check_closed_form_cost(cost)
    return zb_fraction(zb_overlapped_bubble_time(schedule_name, pp_size, cost),
                        num_microbatches, cost)


def bubble_fraction(schedule_name: str, pp_size: int, num_microbatches: int,
                    num_chunks: int = 1, cost: CostModel | None = None,
                    num_steps: int = DEFAULT_ASYNC_STEPS) -> float:
    """Bubble time over makespan for one training step (all steps for asynchronous ones).

    * gpipe, 1f1b: ``(p-1)/(m+p-1)``; GPipe (Huang et al. 2019, arXiv:1811.06965, Sec. 2.3)
      and Megatron-LM (Narayanan et al., SC'21, arXiv:2104.04473, Sec. 2.2.1), which write
      it as (p-1)/m of the ideal time. It holds for any ratio of F to B.
    * interleaved-1f1b: ``(p-1)/(v*m+p-1)``; Megatron-LM SC'21 Sec. 2.2.2 gives the bubble as
      (p-1)/(v*m) of the ideal time. Needs m a multiple of p, as the schedule does.
    * zb-h1: ``b/(m*(T_F+T_I+T_W)+b)`` with b from ``zb_h1_bubble_time`` (the ZB paper's
      Table 2 while T_W <= min(T_F, T_I), pplab's extension beyond); needs m >= p.
    * zb-h2: ``b/(m*(T_F+T_I+T_W)+b)`` with b from ``zb_h2_bubble_time``; needs m >= 2p-1.
    * zb-v: ``(p-1)/(6m+p-1)`` when T_F = T_I = T_W, the paper's zero-bubble condition
      (Qi et al. 2024, arXiv:2405.15362): what is left is the (p-1) forwards of half a
      stage before the last rank starts. Needs m >= 2p-1 and 2 chunks per rank.
    * looped-bfs: ``(p-1)/(v*m+p-1)`` as interleaved-1f1b, for m >= p.
    * naive: ``(p-1)/p``: one rank works at a time (GPipe paper, Fig. 2b).
    * pipedream, pipedream-2bw: no flush, so one fill and drain over all ``num_steps``
      steps: ``(p-1)/(num_steps*m+p-1)`` (PipeDream, Narayanan et al., SOSP 2019).

    All assume equal stages and free communication; pass ``cost`` for zb-h1's F, I, W.
    """
    _check_numbers(pp_size, num_microbatches, num_chunks)
    p, m, v = pp_size, num_microbatches, num_chunks
    cost = check_closed_form_cost(cost)
    least, most = _CHUNKS.get(schedule_name, (1, 1))
    if least == most == 1 and v != 1:
        raise ValueError(f"{schedule_name} places 1 chunk per rank; got num_chunks {v}")
    if v < least or (most is not None and v > most):
        wanted = f"exactly {least}" if least == most else f"at least {least}"
        raise ValueError(f"{schedule_name} needs {wanted} chunks per rank, got {v}")
    if schedule_name in _SAME_SHAPE_AS_1F1B:
        return (p - 1) / (m + p - 1)
    if schedule_name == "interleaved-1f1b":
        if m % p:
            raise ValueError(f"interleaved-1f1b needs microbatches a multiple of the {p} stages; "
                             f"got {m}")
        return (p - 1) / (v * m + p - 1)
    if schedule_name == "zb-h1":
        if m < p:
            raise ValueError(f"the ZB-H1 closed form needs at least as many microbatches as "
                             f"stages; got {m} microbatches for {p} stages")
        return zb_fraction(zb_h1_bubble_time(p, cost), m, cost)
    if schedule_name in ("zb-h2", "zb-v") and m < 2 * p - 1:
        raise ValueError(f"the {schedule_name} closed form needs at least 2p-1 microbatches to "
                         f"fill the pipe; got {m} microbatches for {p} ranks")
    if schedule_name == "zb-h2":
        return zb_fraction(zb_h2_bubble_time(p, cost), m, cost)
    if schedule_name == "zb-v":
        if not cost.forward == cost.backward_input == cost.backward_weight:
            raise ValueError(f"the zb-v closed form holds where the paper's zero bubble does, at "
                             f"F = I = W; got f={cost.forward:g}, i={cost.backward_input:g}, "
                             f"w={cost.backward_weight:g}")
        return (p - 1) / (6 * m + p - 1)
    if schedule_name == "looped-bfs":
        if m < p:
            raise ValueError(f"the looped-bfs closed form needs at least as many microbatches "
                             f"as ranks; got {m} microbatches for {p} ranks")
        return (p - 1) / (v * m + p - 1)
    if schedule_name == "naive":
        return (p - 1) / p
    if schedule_name in _ASYNC:
        if num_steps < 1:
            raise ValueError(f"need at least 1 step, got {num_steps}")
        return (p - 1) / (num_steps * m + p - 1)
    raise ValueError(f"no closed form for schedule {schedule_name!r}; known: {', '.join(KNOWN)}")


def bubble_ratio_to_ideal(schedule_name: str, pp_size: int, num_microbatches: int,
                          num_chunks: int = 1, cost: CostModel | None = None,
                          num_steps: int = DEFAULT_ASYNC_STEPS) -> float:
    """Bubble time over ideal (bubble-free) time: the normalisation the papers print.

    ``(p-1)/m`` for gpipe and 1f1b and ``(p-1)/(v*m)`` for interleaved-1f1b (Megatron-LM,
    SC'21, arXiv:2104.04473, Sec. 2.2). Equal to ``f / (1 - f)`` for the fraction f of
    ``bubble_fraction``, since makespan = ideal + bubble.
    """
    fraction = bubble_fraction(schedule_name, pp_size, num_microbatches, num_chunks, cost,
                               num_steps)
    return fraction / (1.0 - fraction)


def _interleaved_count(n: int, chunk: int, pp_size: int, num_chunks: int) -> int:
    """How many of Megatron's first ``n`` chunk visits on a rank go to ``chunk``.

    Visits go in groups of ``pp_size`` microbatches per chunk, cycling through the chunks.
    """
    cycle = pp_size * num_chunks
    whole, rest = divmod(n, cycle)
    return whole * pp_size + min(max(rest - chunk * pp_size, 0), pp_size)


def peak_activations(schedule_name: str, pp_size: int, num_microbatches: int,
                     num_chunks: int = 1,
                     num_steps: int = DEFAULT_ASYNC_STEPS) -> dict[int, int]:
    """Most microbatches whose activations a stage holds at once (F done, backward not).

    * gpipe: m on every stage: all forwards run before any backward (GPipe, Sec. 2.3).
    * 1f1b, pipedream, pipedream-2bw: ``min(p - i, m)`` on stage i: p - 1 - i warm-up
      forwards plus one (PipeDream-Flush, Narayanan et al., ICML 2021, arXiv:2006.09503).
    * zb-h1: ``min(p, m)`` on every stage: stage i runs p - 1 - i warm-up forwards and keeps
      i weight gradients pending, each holding its activation until W ends (derived from
      the order; the ZB paper, Sec. 2.1 and Table 2, gives ZB-H1's peak as 1F1B's, p M_B).
    * interleaved-1f1b: on the stage of chunk c on rank r, the largest count, over the
      steady state, of forwards issued to chunk c minus backwards finished on it, following
      Megatron's order (warm-up ``2(p-r-1) + (v-1)p`` visits, then one forward and one
      backward, backwards visiting chunks in reverse); with m == p all forwards come first
      and every stage holds m.
    * zb-h2: ``min(2p - 1, m)`` on every stage: 2(p-1-i) warm-up forwards, one more, and 2i
      weight gradients pending (the ZB paper's (2p-1) M_B, Table 2).
    * zb-v: ``min(2p - s, m)`` on stage s of the V: a rank holds about 2p + 1 chunks' worth,
      1F1B's p microbatches of a whole rank's share (Qi et al. 2024, arXiv:2405.15362).
    * looped-bfs: m on every stage, as GPipe: all forwards come first.
    * naive: 1.
    """
    _check_numbers(pp_size, num_microbatches, num_chunks)
    p, m, v = pp_size, num_microbatches, num_chunks
    if schedule_name == "gpipe":
        return {stage: m for stage in range(p)}
    if schedule_name == "1f1b":
        return {stage: min(p - stage, m) for stage in range(p)}
    if schedule_name in _ASYNC:
        return {stage: min(p - stage, m * num_steps) for stage in range(p)}
    if schedule_name == "zb-h1":
        return {stage: min(p, m) for stage in range(p)}
    if schedule_name == "naive":
        return {stage: 1 for stage in range(p)}
    if schedule_name == "zb-h2":
        return {stage: min(2 * p - 1, m) for stage in range(p)}
    if schedule_name == "zb-v":
        return {stage: min(2 * p - stage, m) for stage in range(2 * p)}
    if schedule_name == "looped-bfs":
        return {stage: m for stage in range(p * v)}
    if schedule_name == "interleaved-1f1b":
        if v < 2 or m % p:
            raise ValueError(f"interleaved-1f1b needs at least 2 chunks and microbatches a "
                             f"multiple of {p}; got {v} chunks, {m} microbatches")
        total = m * v
        peaks = {}
        for rank in range(p):
            warmup = total if m == p else min(2 * (p - rank - 1) + (v - 1) * p, total)
            for chunk in range(v):
                if warmup == total:
                    peak = m
                else:
                    # One period of the chunk cycle covers every pattern of the steady state.
                    peak = max(
                        _interleaved_count(warmup + j + 1, chunk, p, v)
                        - _interleaved_count(j, v - 1 - chunk, p, v)
                        for j in range(min(total - warmup, p * v))
                    )
                peaks[chunk * p + rank] = min(peak, m)
        return dict(sorted(peaks.items()))
    raise ValueError(f"no closed form for the peak activations of {schedule_name!r}")


def peak_activations_per_rank(schedule_name: str, pp_size: int, num_microbatches: int,
                              num_chunks: int = 1) -> dict[int, Fraction]:
    """Most activations a rank holds at once, in microbatches of the rank's whole share (a
    chunk holds 1/v of its rank's layers, so one of its microbatches counts 1/v).

    * 1f1b: ``min(p - r, m)`` on rank r, its one stage (``peak_activations``).
    * interleaved-1f1b: rank r runs ``w = 2(p-r-1) + (v-1)p`` warm-up chunk forwards
      (Megatron-LM's ``forward_backward_pipelining_with_interleaving``; all ``v m`` when
      m == p) and one more before its first backward frees any: ``min(w + 1, v m) / v``.
      On rank 0, ``p (1 + (p-1)/(p v))``: the first stage's factor of Korthikanti et al.,
      MLSys 2023, arXiv:2205.05198, Sec. 4.2.3 (their m interleaving stages are our v).
    """
    _check_numbers(pp_size, num_microbatches, num_chunks)
    p, m, v = pp_size, num_microbatches, num_chunks
    if schedule_name == "1f1b" and v == 1:
        return {rank: Fraction(min(p - rank, m)) for rank in range(p)}
    if schedule_name != "interleaved-1f1b" or v < 2 or m % p:
        raise ValueError(f"no per-rank closed form for {schedule_name!r} with {v} chunks, {m} "
                         f"microbatches, {p} ranks (1f1b; interleaved-1f1b with v >= 2, p | m)")
    warmups = {r: v * m if m == p else 2 * (p - r - 1) + (v - 1) * p for r in range(p)}
    return {rank: Fraction(min(w + 1, v * m), v) for rank, w in warmups.items()}


@dataclass(frozen=True)
class ClosedFormResult:
    """A schedule's bubble by its closed form, or why there is none.

    ``value`` is bubble over makespan (the lab's fraction), ``ratio_to_ideal`` the papers'
    bubble over ideal time; both None with ``note`` saying why when the form does not apply.
    """

    form: ClosedForm | None
    value: float | None
    ratio_to_ideal: float | None
    note: str


def closed_form_for(schedule, cost: CostModel | None = None,
                    optimizer_sync: str | None = None) -> ClosedFormResult:
    """The closed-form bubble of ``schedule`` under ``cost``: the one lookup every view uses.

    The form belongs to a family's own order, so a schedule that merely carries a family's
    name (a CSV file called gpipe.csv holding another order) gets none; several steps of it
    (``repeat_steps``) are its order. ``optimizer_sync`` "post" asks for the steady state of
    overlapping steps (``OVERLAPPED_FORMS``), anything else for one flushed step; each form
    names its regime (``ClosedForm.regime``).
    """
    overlapped = optimizer_sync == "post" and not schedule.is_async
    form = (OVERLAPPED_FORMS if overlapped else CLOSED_FORMS).get(schedule.name)
    if form is None:
        regime = " when steps overlap under post-validation" if overlapped else ""
        return ClosedFormResult(None, None, None,
                                f"no closed form for {schedule.name!r}{regime}")
    if not _is_registered_order(schedule):
        return ClosedFormResult(None, None, None,
                                f"this order differs from the registered {schedule.name}")
    try:
        if overlapped:
            value = overlapped_bubble_fraction(schedule.name, schedule.pp_size,
                                               schedule.microbatches_per_step,
                                               schedule.num_chunks, cost)
        else:
            value = bubble_fraction(schedule.name, schedule.pp_size,
                                    schedule.microbatches_per_step, schedule.num_chunks, cost,
                                    num_steps=schedule.num_steps)
    except ValueError as error:
        return ClosedFormResult(form, None, None, str(error))
    ratio = value / (1.0 - value) if value < 1.0 else None
    return ClosedFormResult(form, value, ratio, "")


def _is_registered_order(schedule) -> bool:
    options = {"num_steps": schedule.num_steps} if schedule.is_async else {}
    try:
        built = build(schedule.name, schedule.pp_size, schedule.microbatches_per_step,
                      schedule.num_chunks, **options)
    except ValueError:
        return False
    if not schedule.is_async and schedule.num_steps > 1:
        built = repeat_steps(built, schedule.num_steps)
    return built.actions == schedule.actions and built.stage_to_rank == schedule.stage_to_rank
