"""PipeDream and PipeDream-2BW: 1F1B that never flushes, with stashed weight versions.

Both keep the pipe full across training steps: the next step's forwards start while the
previous step's backwards are still running, so there is fill and drain only once per run.
The price is staleness, paid for with weight versions:

* PipeDream updates a stage's weights after every backward and stashes the version each
  in-flight microbatch used, so its backward sees the weights its forward saw. Stage ``s``
  of ``P`` keeps up to ``P - s`` versions.
* PipeDream-2BW accumulates the gradients of a whole step (M microbatches) and then updates,
  so with M >= P no more than two versions are ever alive (double-buffered weights).

The versions are not stored in the schedule: ``weight_versions(schedule)`` derives them
from the order, and the engine records the version it really used.

    pplab simulate --schedule pipedream --pp 4 --microbatches 4
"""

from __future__ import annotations

from .actions import Schedule
from .registry import register
from .simple import one_f_one_b_order

DEFAULT_STEPS = 3


def _no_flush(name: str, pp_size: int, num_microbatches: int, num_steps: int,
              update_every: int) -> Schedule:
    if num_steps < 1:
        raise ValueError(f"{name} needs at least 1 step, got {num_steps}")
    total = num_microbatches * num_steps
    orders = {s: one_f_one_b_order(s, pp_size, total) for s in range(pp_size)}
    return Schedule(
        orders, tuple(range(pp_size)), total, name=name, update_every=update_every,
        microbatches_per_step=num_microbatches, params={"num_steps": num_steps},
    )


@register("pipedream", paper="PipeDream, Narayanan et al., SOSP 2019, doi:10.1145/3341301.3359646",
          asynchronous=True)
def pipedream(pp_size: int, num_microbatches: int, num_chunks: int = 1,
              num_steps: int = DEFAULT_STEPS) -> Schedule:
    """Asynchronous 1F1B, an update after every backward, weight stashing per microbatch."""
    return _no_flush("pipedream", pp_size, num_microbatches, num_steps, update_every=1)


@register("pipedream-2bw", paper="PipeDream-2BW, Narayanan et al., ICML 2021, arXiv:2006.09503",
          asynchronous=True)
def pipedream_2bw(pp_size: int, num_microbatches: int, num_chunks: int = 1,
                  num_steps: int = DEFAULT_STEPS) -> Schedule:
    """Asynchronous 1F1B with one update per step of M microbatches and two weight versions."""
    if num_microbatches < pp_size:
        raise ValueError(
            f"pipedream-2bw keeps two weight versions only with at least as many microbatches "
            f"per step as stages: {num_microbatches} microbatches < {pp_size} stages"
        )
    return _no_flush("pipedream-2bw", pp_size, num_microbatches, num_steps,
                     update_every=num_microbatches)
