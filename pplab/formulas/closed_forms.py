"""The closed-form bubble of every family as the lab writes it: text, LaTeX, source, regime.

What it teaches: a closed form holds only in the regime it was derived for, and saying
which is half of the formula. Three regimes occur:

* ``FLUSHED``: one training step whose optimizer waits for every stage (a barrier, as for
  global gradient-norm clipping); the last rank starts (p-1) forwards late, the first ends
  early, and both gaps count.
* ``OVERLAPPED``: the steady state of many steps under the zero-bubble paper's optimizer
  post-validation (Qi et al., ICLR 2024, arXiv:2401.10241, Sec. 4), where a rank starts the
  next step right after its own last W; only the gaps inside a rank's own step remain.
* ``WHOLE_RUN``: asynchronous schedules, which never flush: one fill and drain per run.

Where pplab extends a paper's form (a ``max`` that keeps it true beyond the paper's costs),
``extension`` says what is pplab's own; the tests hold every form to the simulator.
The numbers behind the forms are ``pplab.formulas.pipeline``'s.

    python -c "from pplab.formulas.closed_forms import OVERLAPPED_FORMS as f; \
print(f['zb-h2'].text, '|', f['zb-h2'].regime)"
"""

from __future__ import annotations

from dataclasses import dataclass

FLUSHED = "one step, flushed: the optimizer step waits for every stage (a barrier)"
OVERLAPPED = ("steady state of overlapping steps under optimizer post-validation (Qi et al., "
              "ICLR 2024, Sec. 4): a rank starts the next step after its own last W")
WHOLE_RUN = "the whole run: an asynchronous schedule never flushes, one fill and drain"


@dataclass(frozen=True)
class ClosedForm:
    """How the lab writes a family's bubble formula: plain text, LaTeX, where it is from, the
    regime it assumes, and what in it is pplab's own extension ("" : nothing)."""

    text: str
    latex: str
    source: str
    regime: str = FLUSHED
    extension: str = ""


_MEGATRON = "Megatron-LM, Narayanan et al. SC 2021 (arXiv:2104.04473)"
# The one way the lab cites ZB-H1's and ZB-H2's bubble: the paper's Sec. 2.3 and its Table 2.
_ZB = ("Zero Bubble Pipeline Parallelism, Qi et al., ICLR 2024 (arXiv:2401.10241), Sec. 2.3, "
       "Table 2")
_ZB_H1_EXTENSION = ("the max(...): the paper gives (p-1)(T_F+T_B-T_W) for any costs; pplab's "
                    "max keeps it true for pplab's zb-h1 order where T_W > min(T_F, T_I)")
CLOSED_FORMS: dict[str, ClosedForm] = {
    "gpipe": ClosedForm("(p-1)/(m+p-1)", r"\frac{p-1}{m+p-1}",
                        "GPipe, Huang et al. 2019 (arXiv:1811.06965), Sec. 2.3"),
    "1f1b": ClosedForm("(p-1)/(m+p-1)", r"\frac{p-1}{m+p-1}", f"{_MEGATRON}, Sec. 2.2.1"),
    "interleaved-1f1b": ClosedForm("(p-1)/(v*m+p-1)", r"\frac{p-1}{v\,m+p-1}",
                                   f"{_MEGATRON}, Sec. 2.2.2"),
    "zb-h1": ClosedForm(
        "b/(m(F+I+W)+b), b=(p-1)max(F+I-W,F,I)",
        r"\frac{b}{m(T_F+T_I+T_W)+b},\ b=(p-1)\max(T_F+T_I-T_W,\,T_F,\,T_I)",
        f"{_ZB}: (p-1)(T_F+T_B-T_W), its B being our I", extension=_ZB_H1_EXTENSION),
    "zb-h2": ClosedForm(
        "b/(m(F+I+W)+b), b=(p-1)max(F,I-F,F+I-2W)",
        r"\frac{b}{m(T_F+T_I+T_W)+b},\ b=(p-1)\max(T_F,\,T_I-T_F,\,T_F+T_I-2T_W)",
        f"{_ZB}: (p-1)(T_F+T_B-2T_W), reached only when steps overlap (its Sec. 4)",
        extension="the max(...): a flushed step keeps the last rank's (p-1)T_F fill, which "
                  "the paper's form (a rank's own span) leaves out"),
    "zb-v": ClosedForm(
        "(p-1)/(6m+p-1) when F=I=W", r"\frac{p-1}{6m+p-1}\ (T_F=T_I=T_W)",
        "Pipeline Parallelism with Controllable Memory, Qi et al. 2024 (arXiv:2405.15362): "
        "zero bubble at T_F=T_B=T_W", extension="the (p-1)T_F/2 fill of a flushed step"),
    "looped-bfs": ClosedForm(
        "(p-1)/(v*m+p-1)", r"\frac{p-1}{v\,m+p-1}",
        "Breadth-First PP, Lamy-Poirier 2023 (arXiv:2211.05953): with m >= p the loops never "
        f"wait, so the fill and drain are interleaved 1F1B's ({_MEGATRON}, Sec. 2.2.2)"),
    "naive": ClosedForm("(p-1)/p", r"\frac{p-1}{p}",
                        "GPipe, Huang et al. 2019, Fig. 2b: one rank works at a time"),
    "pipedream": ClosedForm("(p-1)/(steps*m+p-1)", r"\frac{p-1}{\mathrm{steps}\cdot m+p-1}",
                            "PipeDream, Narayanan et al. SOSP 2019: one fill and drain per run",
                            regime=WHOLE_RUN),
    "pipedream-2bw": ClosedForm(
        "(p-1)/(steps*m+p-1)", r"\frac{p-1}{\mathrm{steps}\cdot m+p-1}",
        "PipeDream-2BW, Narayanan et al. ICML 2021: one fill and drain per run",
        regime=WHOLE_RUN),
}

_KEPT = ("both ends of the fill and drain lie inside a rank's own step (stage 0 waits for "
         "the first backward, the last stage for the last forward): overlapping steps "
         "removes none of it")
# Under post-validation: the families whose steady state the simulator confirms on a grid
# (tests/test_overlapping_steps.py). The ones missing (zb-v, dualpipe-v, interleaved-zb) have
# none: passing the state along the ranks does not match their V-shaped or looped order.
OVERLAPPED_FORMS: dict[str, ClosedForm] = {
    **{name: ClosedForm(CLOSED_FORMS[name].text, CLOSED_FORMS[name].latex,
                        f"{CLOSED_FORMS[name].source}; unchanged when steps overlap: {_KEPT}",
                        regime=OVERLAPPED)
       for name in ("gpipe", "1f1b", "interleaved-1f1b", "looped-bfs", "naive")},
    "zb-h1": ClosedForm(
        "b/(m(F+I+W)+b), b=(p-1)max(F+I-W,I)",
        r"\frac{b}{m(T_F+T_I+T_W)+b},\ b=(p-1)\max(T_F+T_I-T_W,\,T_I)",
        f"{_ZB}: (p-1)(T_F+T_B-T_W); the last rank's fill overlaps the step before",
        regime=OVERLAPPED,
        extension="the max with T_I: stage 0 still waits (p-1)T_I for its first input "
                  "gradient, which the paper's form undercounts where T_W > T_F"),
    "zb-h2": ClosedForm(
        "b/(m(F+I+W)+b), b=(p-1)max(0,I-F,F+I-2W)",
        r"\frac{b}{m(T_F+T_I+T_W)+b},\ b=(p-1)\max(0,\,T_I-T_F,\,T_F+T_I-2T_W)",
        f"{_ZB}: (p-1)(T_F+T_B-2T_W), zero at T_F=T_B=T_W, with Sec. 4's post-validation",
        regime=OVERLAPPED,
        extension="the max with 0 and T_I-T_F: where the paper's term is negative, or the "
                  "input gradients' chain is the longer, pplab's zb-h2 order leaves that"),
}
