"""How ``pplab compare`` reads a configuration: ``NAME[:KEY=VALUE,...]``.

* ``NAME`` is a schedule from ``pplab schedules`` (gpipe, 1f1b, interleaved-1f1b, zb-h1,
  pipedream, pipedream-2bw, naive), or ``tp`` / ``dp`` for no pipeline at all (one stage:
  the whole model split over ``tp`` ranks, or replicated on ``dp`` ranks; default 2 each).
* ``KEY`` is ``pp`` (pipeline ranks, default 2; 1 for tp and dp), ``m`` (microbatches per
  step, default pp; 1 for tp and dp), ``v`` (model chunks per rank, interleaved only), ``tp``
  (tensor-parallel ranks per stage) or ``dp`` (data-parallel replicas).

Every value is a whole number from 1 to its bound in ``pplab.limits`` (``BOUNDS``), checked
while reading, so no size grows before it is refused. Every configuration of one comparison
trains the same model on the same global batch: ``default_batch`` is the smallest that every
configuration can cut into its microbatches.

    python -c "from pplab.engine.compare_specs import parse_spec; print(parse_spec('tp:tp=4'))"
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pplab import limits
from pplab.topology import Topology

NO_PIPELINE = {"tp": "tp", "dp": "dp"}
NO_PIPELINE_SCHEDULE = "gpipe"  # with one stage it is just F then B per microbatch
KEYS = {"pp": "pipeline ranks", "m": "microbatches per step", "v": "chunks per rank",
        "tp": "tensor-parallel ranks", "dp": "data-parallel replicas"}
BOUNDS = {"pp": limits.MAX_PP_SIZE, "m": limits.MAX_MICROBATCHES, "v": limits.MAX_STAGES,
          "tp": limits.MAX_WORLD_SIZE, "dp": limits.MAX_WORLD_SIZE}
MIN_DEFAULT_BATCH = 16


@dataclass(frozen=True)
class Spec:
    """One configuration as written on the command line, resolved to sizes."""

    text: str
    schedule: str
    pp: int
    m: int
    v: int | None
    tp: int
    dp: int

    @property
    def topology(self) -> Topology:
        return Topology(self.pp, self.tp, self.dp)


def parse_spec(text: str) -> Spec:
    """Read ``NAME[:KEY=VALUE,...]``; raise ValueError naming what is wrong."""
    from pplab.schedules import SCHEDULES

    if len(text) > limits.MAX_COMPARE_SPEC_CHARS:
        raise ValueError(f"a configuration is at most {limits.MAX_COMPARE_SPEC_CHARS} "
                         f"characters, got {len(text):,}: {text[:40]!r}...")
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in SCHEDULES and name not in NO_PIPELINE:
        known = ", ".join(sorted(SCHEDULES) + sorted(NO_PIPELINE))
        raise ValueError(f"unknown configuration {name!r} in {text!r}; choose one of {known}")
    values: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in KEYS:
            raise ValueError(f"cannot read {item!r} in {text!r}: use KEY=VALUE with KEY one of "
                             f"{', '.join(KEYS)}")
        if key in values:
            raise ValueError(f"{key} is given twice in {text!r}")
        value = value.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise ValueError(f"{key}={value} in {text!r} is not a whole number")
        values[key] = int(value)
        if values[key] < 1:
            raise ValueError(f"{key} must be at least 1 in {text!r}, got {values[key]}")
        if values[key] > BOUNDS[key]:
            raise ValueError(f"{key}={values[key]:,} in {text!r} is over pplab's limit of "
                             f"{BOUNDS[key]:,} {KEYS[key]} (pplab.limits)")
    if name in NO_PIPELINE:
        values.setdefault(NO_PIPELINE[name], 2)
        pp = values.get("pp", 1)
        schedule = NO_PIPELINE_SCHEDULE
    else:
        pp = values.get("pp", 2)
        schedule = name
    return Spec(text.strip(), schedule, pp, values.get("m", pp if name not in NO_PIPELINE else 1),
                values.get("v"), values.get("tp", 1), values.get("dp", 1))


def default_batch(specs: Sequence[Spec]) -> int:
    """Smallest multiple of every configuration's m x dp that is at least 16 rows."""
    unit = math.lcm(*(s.m * s.dp for s in specs))
    return unit * max(1, -(-MIN_DEFAULT_BATCH // unit))
