"""Lesson 9's layouts as the planner sees them, and a layout as a learner types it.

``layout_of`` asks ``pplab.planner`` for one layout of a model on 8-GPU nodes (its memory per
pipeline rank, its traffic, and, timed, its simulated step as ``pplab plan`` prints it), or
the rule the layout breaks; ``valid_layouts`` lists every layout that follows the rules, for
drawing a learner's numbers; ``read_layout`` and ``LayoutPart`` read ``pp=16 tp=8 dp=16 b=1``.

    python -c "from pplab.exercises import gpt3_layouts as g; print(g.read_layout('pp=4 dp=8'))"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar

from pplab.exercises.core import BadAnswer
from pplab.exercises.parts import Part
from pplab.limits import MAX_ANSWER_CHARS, MAX_ANSWER_DEGREE
from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS, ClusterSpec, ModelSpec, evaluate
from pplab.planner.specs import GIB

MICROBATCH_SIZES = (1, 2, 4, 8)
TP_SIZES = (1, 2, 4, 8)
NODE = PRESET_CLUSTERS["dgx-a100-80gb"]  # 8 GPUs a node, NVLink inside, InfiniBand between
SCHEDULE = "1f1b"


def cluster_of(nodes: int, memory_gib: float) -> ClusterSpec:
    return replace(NODE, name=f"dgx-a100-{memory_gib:g}gib", memory_gib=memory_gib,
                   nodes=nodes)


def layout_of(model: ModelSpec, cluster: ClusterSpec, batch: int, recompute: str, pp: int,
              tp: int, dp: int, b: int, schedule: str = SCHEDULE, sequence_parallel=True,
              timed: bool = False):
    """The planner's estimate of one layout (timed: its simulated step and bubble too, as
    ``pplab plan`` prints them), or the rule it breaks (a string)."""
    try:
        return evaluate(model, cluster, batch, pp=pp, tp=tp, dp=dp, microbatch_size=b,
                        schedule=schedule, recompute=recompute,
                        sequence_parallel=sequence_parallel, timed=timed)
    except ValueError as error:
        return str(error)


@lru_cache(maxsize=512)
def valid_layouts(model_name: str, nodes: int, memory_gib: float, batch: int,
                  recompute: str) -> tuple[tuple[int, int, int, int, float], ...]:
    """(pp, tp, dp, b, peak GiB) of every layout that follows the planner's rules."""
    model, cluster = PRESET_MODELS[model_name], cluster_of(nodes, memory_gib)
    gpus, found = cluster.num_gpus, []
    for pp in (p for p in range(1, model.layers + 1) if model.layers % p == 0):
        for tp in TP_SIZES:
            if gpus % (pp * tp):
                continue
            for b in MICROBATCH_SIZES:
                estimate = layout_of(model, cluster, batch, recompute, pp, tp,
                                     gpus // (pp * tp), b)
                if not isinstance(estimate, str):
                    found.append((pp, tp, gpus // (pp * tp), b, estimate.peak_memory / GIB))
    return tuple(found)


_KEYS = {"pp": "pp", "p": "pp", "tp": "tp", "t": "tp", "dp": "dp", "d": "dp", "b": "b",
         "mb": "b", "microbatch": "b"}
_PAIR = re.compile(r"([a-z]+)\s*[=:]\s*(\S+?)(?=[\s,;]|$)")


def _degree(name: str, value: object) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_ANSWER_DEGREE:
        raise BadAnswer(f"{name}={text} is not a whole number from 1 to {MAX_ANSWER_DEGREE:,}")
    return int(text)


def read_layout(answer: object) -> tuple[int, int, int, int]:
    """(pp, tp, dp, b) from ``"pp=16 tp=8 dp=16 b=1"``, a mapping or a tuple of four;
    BadAnswer naming what is missing or unreadable."""
    if isinstance(answer, list | tuple):
        if len(answer) != 4:
            raise BadAnswer("give four numbers: pp, tp, dp and the microbatch size b")
        return tuple(_degree(n, x) for n, x in zip(("pp", "tp", "dp", "b"), answer,
                                                       strict=True))
    if isinstance(answer, Mapping):
        pairs = [(str(k).strip().casefold(), v) for k, v in answer.items()]
    else:
        text = str(answer).strip().casefold()
        if not text or len(text) > MAX_ANSWER_CHARS:
            raise BadAnswer("give a layout such as pp=4 tp=2 dp=8 b=1")
        pairs = _PAIR.findall(text)
        if _PAIR.sub("", text).strip(" ,;"):
            raise BadAnswer(f"cannot read {str(answer).strip()!r}: write pp=.. tp=.. dp=.. b=..")
    layout: dict[str, int] = {}
    for key, value in pairs:
        if key not in _KEYS:
            raise BadAnswer(f"{key!r} is not one of pp, tp, dp, b")
        if _KEYS[key] in layout:
            raise BadAnswer(f"{_KEYS[key]} is given twice")
        layout[_KEYS[key]] = _degree(_KEYS[key], value)
    missing = [k for k in ("pp", "tp", "dp", "b") if k not in layout]
    if missing:
        raise BadAnswer(f"give {' and '.join(missing)} too (pp=.. tp=.. dp=.. b=..)")
    return layout["pp"], layout["tp"], layout["dp"], layout["b"]


@dataclass(frozen=True)
class LayoutPart(Part):
    """A layout: pipeline, tensor and data-parallel degrees and the microbatch size."""

    kind: ClassVar[str] = "layout"

    def how_to_answer(self, variant=None) -> str:
        return "a layout such as pp=4 tp=2 dp=8 b=1"

    def read(self, answer: object) -> tuple[int, int, int, int]:
        return read_layout(answer)
