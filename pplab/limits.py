"""The sizes pplab accepts, in one place, so every door refuses the same things the same way.

A learner who types ``--pp 100000`` or uploads a 20,000-row CSV should get one line at once,
not a machine that swaps for an hour. Every limit here is checked before the work it guards
starts; raising one is a deliberate edit of this file. The README's reliability section
and docs/reliability.md list them.

    python -c "import pplab.limits as l; print(l.MAX_ACTIONS, l.MAX_PP_SIZE)"
"""

from __future__ import annotations

import math

# Schedules (simulate, validate, the Playground, replaying a recorded run). The simulator and
# the validator take a few microseconds per action, so the largest schedule answers in
# seconds; its event table stays within a few hundred MB.
MAX_ACTIONS = 500_000
MAX_PP_SIZE = 4096  # ranks of one pipeline
MAX_STAGES = 16_384  # model stages, P x V
MAX_MICROBATCHES = 100_000  # microbatches of a whole schedule, all steps together
MAX_CSV_CHARS = 16 * 2**20  # a schedule CSV's text

# Cost model: durations in cost units or seconds, bytes of one message. Below 2**53 every
# whole number is exact in a float and sums of half a million of them cannot overflow.
MAX_COST = 1e12
MAX_MESSAGE_BYTES = 2**50


def check_count(what: str, value: int, limit: int) -> None:
    """Refuse ``value`` above ``limit`` with one line that names the limit."""
    if value > limit:
        raise ValueError(f"{what} {value:,} is over pplab's limit of {limit:,} "
                         f"(pplab.limits); choose a smaller one")


def check_schedule_size(name: str, pp_size: int, num_microbatches: int, num_chunks: int,
                        actions_per_microbatch: int = 3, num_steps: int = 1) -> None:
    """Refuse a family's build before it starts when the result would exceed the limits."""
    check_count("pipeline depth", pp_size, MAX_PP_SIZE)
    check_count("model stages", pp_size * num_chunks, MAX_STAGES)
    check_count("microbatches", num_microbatches * num_steps, MAX_MICROBATCHES)
    actions = pp_size * num_chunks * num_microbatches * num_steps * actions_per_microbatch
    if actions > MAX_ACTIONS:
        raise ValueError(f"{name} with pp {pp_size:,}, {num_chunks} chunks, {num_microbatches:,} "
                         f"microbatches and {num_steps} step(s) is about {actions:,} actions; "
                         f"pplab handles at most {MAX_ACTIONS:,} (pplab.limits)")


def check_finite_number(what: str, value: object, limit: float, *, positive: bool = False) -> float:
    """A real number in [0, limit] (or (0, limit] when ``positive``); one line otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    if value > limit:
        raise ValueError(f"{what} {value:g} is over pplab's limit of {limit:g} (pplab.limits)")
    return float(value)

# Run directories (the lab reads every folder under the runs folder, including foreign ones).
MAX_META_BYTES = 8 * 2**20
MAX_EVENTS_BYTES = 256 * 2**20
MAX_EVENT_ROWS = 5_000_000
MAX_WORLD_SIZE = 4096  # processes of one recorded run

# Processes of a local run (pplab train, pplab compare). Beyond the first two a run is a mistake,
# not an experiment, and is refused unless --oversubscribe; the memory bound holds even then,
# because every rank is a Python process with torch loaded.
MAX_PROCESSES = 64
MAX_RANKS_PER_SLOT = 4  # ranks per CPU core (or GPU)
RANK_MEMORY_BYTES = 300 * 2**20  # what one CPU rank holds: Python, torch, the toy model

# Training runs (pplab train, pplab compare, the app's Run page). The toy GPT is a teaching
# model: these bound what one request can ask of the machine before any process starts.
MAX_TRAIN_STEPS = 100_000
MAX_TIMEOUT_S = 86_400.0  # a day without progress; torch's own timeouts overflow near 24 days
MAX_LEARNING_RATE = 10.0
MAX_SEED = 2**32 - 1
MAX_SEQ_LEN = 8192
MAX_D_MODEL = 8192
MAX_D_FF = 4 * MAX_D_MODEL
MAX_HEADS = 1024
MAX_LAYERS = 1024
MAX_BATCH_SIZE = 65_536  # rows of one global batch
MAX_TEXT_BYTES = 64 * 2**20  # the corpus of --task text
# Weights, gradients and Adam state of every replica plus the activations of a whole batch,
# estimated by pplab.engine.request.estimated_training_bytes.
MAX_TRAINING_BYTES = 16 * 2**30
