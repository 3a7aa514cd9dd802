"""Closed forms for pipeline schedules, each with its source, to hold against the simulator.

The bubble fraction here is bubble time over makespan (the lab's definition: idle over
ranks x makespan), which papers often write relative to the ideal time instead; both are
given. Where a paper's form needs an assumption, the docstring says which, and the tests
check every form against ``pplab.sim.simulator`` on a grid of stages and microbatches.

    python -c "from pplab.formulas.pipeline import bubble_fraction; \
    print(bubble_fraction('1f1b', 4, 8))"
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from pplab.schedules.pipedream import DEFAULT_STEPS as DEFAULT_ASYNC_STEPS
from pplab.schedules.registry import build
from pplab.sim.cost_model import CostModel


@dataclass(frozen=True)
class ClosedForm:
    """How the lab writes a family's bubble formula: plain text, LaTeX, and where it is from."""

    text: str
    latex: str
    source: str


_MEGATRON = "Megatron-LM, Narayanan et al. SC 2021 (arXiv:2104.04473)"
# The one way the lab cites ZB-H1's and ZB-H2's bubble: the paper's Sec. 2.3 and its Table 2.
_ZB = ("Zero Bubble Pipeline Parallelism, Qi et al., ICLR 2024 (arXiv:2401.10241), Sec. 2.3, "
       "Table 2")
CLOSED_FORMS: dict[str, ClosedForm] = {
    "gpipe": ClosedForm("(p-1)/(m+p-1)", r"\frac{p-1}{m+p-1}",
                        "GPipe, Huang et al. 2019 (arXiv:1811.06965), Sec. 2.3"),
    "1f1b": ClosedForm("(p-1)/(m+p-1)", r"\frac{p-1}{m+p-1}", f"{_MEGATRON}, Sec. 2.2.1"),
    "interleaved-1f1b": ClosedForm("(p-1)/(v*m+p-1)", r"\frac{p-1}{v\,m+p-1}",
                                   f"{_MEGATRON}, Sec. 2.2.2"),
    "zb-h1": ClosedForm(
        "b/(m(F+I+W)+b), b=(p-1)max(F+I-W,F,I)",
        r"\frac{b}{m(T_F+T_I+T_W)+b},\ b=(p-1)\max(T_F+T_I-T_W,\,T_F,\,T_I)",
        f"{_ZB}: (p-1)(T_F+T_B-T_W), its B being our I; the max(...) is pplab's own "
        "extension, equal to it while T_W <= min(T_F, T_I) and matching pplab's zb-h1 order "
        "beyond"),
    "zb-h2": ClosedForm(
        "b/(m(F+I+W)+b), b=(p-1)max(F,I-F,F+I-2W)",
        r"\frac{b}{m(T_F+T_I+T_W)+b},\ b=(p-1)\max(T_F,\,T_I-T_F,\,T_F+T_I-2T_W)",
        f"{_ZB}: (p-1)(T_F+T_B-2T_W); pplab adds the (p-1)T_F fill of a flushed step"),
    "zb-v": ClosedForm(
        "(p-1)/(6m+p-1) when F=I=W", r"\frac{p-1}{6m+p-1}\ (T_F=T_I=T_W)",
        "Pipeline Parallelism with Controllable Memory, Qi et al. 2024 (arXiv:2405.15362): "
        "zero bubble at T_F=T_B=T_W; pplab adds the (p-1)T_F/2 fill of a flushed step"),
    "looped-bfs": ClosedForm(
        "(p-1)/(v*m+p-1)", r"\frac{p-1}{v\,m+p-1}",
        "Breadth-First PP, Lamy-Poirier 2023 (arXiv:2211.05953): with m >= p the loops never "
        f"wait, so the fill and drain are interleaved 1F1B's ({_MEGATRON}, Sec. 2.2.2)"),
    "naive": ClosedForm("(p-1)/p", r"\frac{p-1}{p}",
                        "GPipe, Huang et al. 2019, Fig. 2b: one rank works at a time"),
    "pipedream": ClosedForm("(p-1)/(steps*m+p-1)", r"\frac{p-1}{\mathrm{steps}\cdot m+p-1}",
                            "PipeDream, Narayanan et al. SOSP 2019: one fill and drain per run"),
    "pipedream-2bw": ClosedForm(
        "(p-1)/(steps*m+p-1)", r"\frac{p-1}{\mathrm{steps}\cdot m+p-1}",
        "PipeDream-2BW, Narayanan et al. ICML 2021: one fill and drain per run"),
}

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


def _check_cost(cost: CostModel | None) -> CostModel:
    cost = cost or CostModel()
    if cost.message_time() > 0 or cost.optimizer > 0:
        raise ValueError(
            "the closed forms assume free communication and no optimizer time; got "
            f"{cost.message_time()} per message and optimizer {cost.optimizer}")
    if cost.stage_scale is not None and len(set(cost.stage_scale)) > 1:
        raise ValueError(
            f"the closed forms assume equal stages; got stage_scale {cost.stage_scale}")
    return cost


def zb_h1_bubble_time(pp_size: int, cost: CostModel | None = None) -> float:
    """Bubble time of ZB-H1 on the busiest rank, for M >= P microbatches.

    The paper (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 2.3, Table 2) gives
    ``(p-1)(T_F + T_B - T_W)`` (its B is our I) for any costs, with no condition; its
    transformer counts have T_W < T_F < T_B (Table 1). That term is the largest only while
    T_W <= min(T_F, T_I); beyond, the chain of forwards or of input gradients sets the
    bubble. pplab's own extension, not the paper's, ``(p-1) * max(T_F + T_I - T_W, T_F,
    T_I)`` matches pplab's zb-h1 order exactly on a grid of costs (tests/test_formulas.py).
    """
    cost = _check_cost(cost)
    f, i, w = cost.forward, cost.backward_input, cost.backward_weight
    return (pp_size - 1) * max(f + i - w, f, i)


def zb_h2_bubble_time(pp_size: int, cost: CostModel | None = None) -> float:
    """Bubble time of pplab's ZB-H2 on the busiest rank, for M >= 2P-1 microbatches.

    The ZB paper (Sec. 2.3, Table 2) gives ``(p-1)(T_F + T_B - 2T_W)`` (its B is our I):
    each rank's idle time between its own first and last pass, as the authors' playground
    measures it. Without the optimizer's synchronisation (the paper's Sec. 4) ranks may
    start and end a step apart, and at T_F = T_I = T_W nothing is left. pplab flushes every
    step, so the last rank's (p-1) T_F wait for its first forward stays: pplab's bubble is
    ``(p-1) * max(T_F, T_I - T_F, T_F + T_I - 2T_W)``, the paper's term being the largest
    while T_W <= T_F and 2T_W <= T_F + T_I. Both match pplab's zb-h2 order
    exactly on a grid of costs (tests/test_new_schedules.py).
    """
    cost = _check_cost(cost)
    f, i, w = cost.forward, cost.backward_input, cost.backward_weight
    return (pp_size - 1) * max(f, i - f, f + i - 2 * w)


def _zb_fraction(bubble: float, num_microbatches: int, cost: CostModel) -> float:
    work = num_microbatches * (cost.forward + cost.backward_input + cost.backward_weight)
    return bubble / (work + bubble) if work + bubble > 0 else 0.0


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
    cost = _check_cost(cost)
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
        return _zb_fraction(zb_h1_bubble_time(p, cost), m, cost)
    if schedule_name in ("zb-h2", "zb-v") and m < 2 * p - 1:
        raise ValueError(f"the {schedule_name} closed form needs at least 2p-1 microbatches to "
                         f"fill the pipe; got {m} microbatches for {p} ranks")
    if schedule_name == "zb-h2":
        return _zb_fraction(zb_h2_bubble_time(p, cost), m, cost)
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


def closed_form_for(schedule, cost: CostModel | None = None) -> ClosedFormResult:
    """The closed-form bubble of ``schedule`` under ``cost``: the one lookup every view uses.

    The form belongs to a family's own order, so a schedule that merely carries a family's
    name (a CSV file called gpipe.csv holding another order) gets none.
    """
    form = CLOSED_FORMS.get(schedule.name)
    if form is None:
        return ClosedFormResult(None, None, None, f"no closed form for {schedule.name!r}")
    if not _is_registered_order(schedule):
        return ClosedFormResult(None, None, None,
                                f"this order differs from the registered {schedule.name}")
    try:
        value = bubble_fraction(schedule.name, schedule.pp_size, schedule.microbatches_per_step,
                                schedule.num_chunks, cost, num_steps=schedule.num_steps)
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
    return built.actions == schedule.actions and built.stage_to_rank == schedule.stage_to_rank
