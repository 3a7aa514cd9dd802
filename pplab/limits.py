"""The sizes pplab accepts, in one place, so every door refuses the same things the same way.

A learner who types ``--pp 100000`` or uploads a 20,000-row CSV should get one line at once,
not a machine that swaps for an hour. Every limit here is checked before the work it guards
starts; raising one is a deliberate edit of this file. The README's reliability section
and docs/reliability.md list them. No module defines a ``MAX_`` constant of its own
(tests/test_limits.py looks): where two doors bound different things, the two names say
which (``MAX_LAYERS`` of the toy GPT, ``MAX_PLANNED_LAYERS`` of a real model, ...).

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
# Replaying a recorded run's schedule in the lab (pplab.calibration): a foreign meta.json must
# not make the lab simulate for hours. A prediction draws the schedule several times to
# sample the measured spread (about 20 draws); all draws together stay within the second
# bound, so a large schedule is drawn fewer times rather than refused.
MAX_REPLAY_ACTIONS = 200_000
MAX_SAMPLED_ACTIONS = 200_000

# Cost model: durations in cost units or seconds, bytes of one message. Below 2**53 every
# whole number is exact in a float and sums of half a million of them cannot overflow.
MAX_COST = 1e12
MAX_MESSAGE_BYTES = 2**50
MAX_BANDWIDTH = 1e18  # bytes per time unit: far above any link, still finite in every sum


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
# Processes of one run, recorded or asked for: a foreign meta.json may claim a million ranks,
# and the lab loops over ranks when it summarises a run.
MAX_WORLD_SIZE = 4096

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
# --clip-grad, a gradient norm: any real model's norms sit far below, and a bound keeps the
# 10 x spike --force-rollback-at makes of it finite.
MAX_CLIP_GRAD = 1e12
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
# pplab compare: each configuration trains for real, so a longer list is a typo, not a plan;
# one configuration is a short "1f1b:pp=2,m=4".
MAX_COMPARE_CONFIGURATIONS = 32
MAX_COMPARE_SPEC_CHARS = 200
# Inside a rank: receive buffers posted ahead of the walk, and completed sends still held.
# Each holds one activation or gradient, so a long asynchronous walk (PipeDream's thousands
# of actions a step) keeps its memory flat instead of growing with the step.
MAX_POSTED_RECEIVES = 32
MAX_PENDING_SENDS = 64

# A run started from the lab's Run page (pplab.classroom.training_jobs): the machine is
# shared with every learner's pages and runs one such run at a time, so a run must end in
# minutes: far below the MAX_TRAIN_STEPS, MAX_LAYERS, MAX_MICROBATCHES and MAX_BATCH_SIZE of
# pplab train. Ranks are bounded by the machine (one per core or GPU), not here.
MAX_LAB_RUN_STEPS = 200
MAX_LAB_RUN_LAYERS = 16
MAX_LAB_RUN_MICROBATCHES = 32
MAX_LAB_RUN_BATCH_SIZE = 512
# pplab demo trains one comparison in front of a class, a few seconds a configuration: a
# deeper pipeline shows no new idea on the projector, only a longer wait.
MAX_DEMO_RANKS = 4

# The planner (pplab plan, the Planner page): real models and clusters. Far above any model
# or cluster built so far, low enough that a typo (an extra zero or three) is refused at
# once instead of enumerating for an hour. These are a real model's sizes, not the toy GPT's.
MAX_PLANNED_LAYERS = 4096
MAX_PLANNED_WIDTH = 2**20  # hidden, ffn, heads
MAX_PLANNED_SEQ_LEN = 2**22
MAX_PLANNED_VOCAB = 2**24
MAX_PLANNED_GPUS_PER_NODE = 1024
MAX_PLANNED_NODES = 2**20
MAX_PLANNED_GPUS = MAX_PLANNED_GPUS_PER_NODE * MAX_PLANNED_NODES
MAX_PLANNED_GLOBAL_BATCH = 2**24
# The planner simulates one pipeline per ranked layout: a deeper one makes each simulated
# step too long to rank thousands of layouts with. Interleaving deeper than 8 chunks adds
# messages and rarely pays, so the search stops there.
MAX_PLANNED_PP = 256
MAX_PLANNED_CHUNKS = 8
MAX_PLAN_SPEC_BYTES = 2**20  # a spec file is a few lines; anything bigger is the wrong file
MAX_PLAN_TOP = 1000  # pplab plan --top: rows of a table meant to be read

# The app's pages answer within seconds on a laptop, for every learner of a class at once:
# they offer less than the library takes. The Planner page ranks every layout of its GPUs
# (16,384 GPUs of 8 in seconds); lesson 9's widget times one layout, so it goes further.
MAX_PLANNER_PAGE_NODES = 2048
# The Planner page ranks pipelines up to this deep: one simulated step of a deeper one takes
# a second or more, and megatron-1t's 128 layers allow pp = 64 and 128, whose ranking took
# 16-35 s of CPU on a 2-core machine (3 s with pp <= 32). The sliders still time any depth;
# pplab plan ranks them all.
MAX_PLANNER_PAGE_RANKED_PP = 32
MAX_LAYOUT_GPUS = 32_768
MAX_PAGE_GLOBAL_BATCH = 65_536  # sequences per step, GPT-3's 1,536 with room to spare
# Lesson 10's what-if predicts from a calibration with sampling, about 20 draws a step.
MAX_WHAT_IF_MICROBATCHES = 64
# Lesson 5's stage split search tries every cut of the layers, C(L-1, p-1) of them.
MAX_SPLITS_SEARCHED = 20_000
MAX_SPLIT_CHARS = 200  # a split typed as "2,3,3": a few numbers
# The Playground re-validates and re-simulates a custom CSV at every rerun. Streamlit refuses
# a bigger upload before it reaches the page (``--server.maxUploadSize`` of pplab lab, MB).
# Checking and simulating a CSV takes about 6 us per character (a 1.36 M-character one took
# 7.7 s of CPU on a 2-core machine), so the Playground takes a quarter of a million: about
# 1.5 s, in the work pool, and 25 times the CSV of the largest family its sliders reach.
MAX_PLAYGROUND_CSV_CHARS = 250_000
MAX_UPLOAD_MB = 1
# Training steps the Playground walks one after the other: a handful shows the steady state
# of overlapping steps (post-validation), and each one adds a step's actions to the walk the
# page redraws at every move of a slider.
MAX_PLAYGROUND_STEPS = 8
# What one view of the Playground or Compare walks and draws, all steps together: a family's
# p x v x m x (2 or 3) actions times its steps, or a CSV's cells times its steps. Simulating
# and drawing 24,576 (interleaved-zb at p=16, m=64, v=8) took 2.5 s at most on a 2-core
# machine, 196,608 (the same over 8 steps) 10 s; this keeps every family's largest single
# step and several steps of the rest (docs/security.md quotes the page's worst).
MAX_PLAYGROUND_ACTIONS = 32_768
# The Presenter animates every box in every frame: p=8, m=16, v=4 (1,024 boxes) builds in
# 2 s and sends 1.3 MB a view; four steps of it (4,096) took 5 s and 4.9 MB a rerun.
MAX_PRESENTER_BOXES = 1024
# Classroom mode: a passcode is three short words; more tries than this from one client
# address (all its browser sessions together) is guessing. Each wrong try makes that address
# wait before the next: 1 s, 2 s, 4 s, 8 s, then a quarter of an hour, doubling after each
# further wrong try (pplab.classroom.passcode_tries). The addresses remembered are bounded.
MAX_PASSCODE_CHARS = 200
MAX_PASSCODE_TRIES = 5
PASSCODE_FIRST_WAIT_S = 1.0
PASSCODE_LOCKOUT_S = 900.0
MAX_PASSCODE_WAIT_S = 86_400.0
MAX_PASSCODE_ADDRESSES = 10_000
# Fair use of one lab server (pplab.classroom.work_pool): requests of the pages that take
# more than about half a second (ranking a planner's layouts, a custom CSV, a searched order,
# a big family) run in worker processes beside the server, one per core but one (at most
# four), with a deadline each; at most this many wait per worker, and a request beyond them
# is told "busy, try again" at once instead of queueing the class behind it. A worker holds
# a bounded memory and sends back a bounded answer. The deadline is far above any request
# at the pages' bounds (docs/security.md quotes them), so only a machine already overloaded
# reaches it.
MAX_WORK_PROCESSES = 4
MAX_WORK_WAITING_PER_PROCESS = 4
WORK_DEADLINE_S = 30.0
MAX_WORK_MEMORY_BYTES = 4 * 2**30
MAX_WORK_ANSWER_BYTES = 256 * 2**20
WORK_NICENESS = 5  # a heavy request yields the CPU to the pages of everyone else
# Answers the lab's pages share across sessions, keyed by content
# (pplab.classroom.shared_results): entries, a big timeline counting one more per 20,000
# events. A Playground view (its timeline, figures and text) takes 4 entries and about
# 400 KiB, so this keeps every view of p 2-8 and m 1-32 (224 of them) in about 100 MB.
MAX_SHARED_RESULTS = 1024
# pplab lab stops its server on SIGTERM, SIGINT or SIGHUP: SIGTERM, then SIGKILL after this
# long, and the same for whatever the server started (pplab.cli.lab_supervisor).
LAB_STOP_GRACE_S = 5.0

# Exercises: what a learner types, writes or hands in. An answer is read, parsed and judged
# in the app's process, so its size and the numbers in it are bounded before any of that.
MAX_LEARNER_NAME_CHARS = 64
MAX_ANSWER_CHARS = 4000
MAX_ANSWER_ACTIONS = 2000  # a schedule typed as an answer: a small pipeline, written by hand
MAX_ANSWER_DEGREE = 10**6  # tp, pp or dp typed as an answer (lesson 9)
MAX_ANSWER_MICROBATCHES = 1000  # the smallest m for a bubble target (lesson 1): a few hundred
# A formula typed as an answer is parsed and evaluated on a few points: exponents up to 8
# cover every formula of the lessons, and 1e12 keeps each term exact-ish and finite.
MAX_FORMULA_CHARS = 300
MAX_FORMULA_POWER = 8
MAX_FORMULA_MAGNITUDE = 1e12
MAX_ATTEMPTS_FILE_BYTES = 4 * 2**20  # every learner's hints used, in ~/.pplab
MAX_SESSION_LEARNERS = 16  # names one browser session of a shared lab keeps tries for
# pplab exercise report reads a class's folder of answer files.
MAX_SUBMISSION_BYTES = 2**20
MAX_SUBMISSION_FILES = 2000
# The coding lab (lesson 4) runs a learner's file in a child process: the file itself, what
# the child may hold and write (its own output included), the actions it may return, what it
# printed that the child keeps, and what of that the grade shows.
MAX_LAB_FILE_BYTES = 2**20
MAX_LAB_MEMORY_BYTES = 2 * 2**30
MAX_LAB_WRITTEN_BYTES = 16 * 2**20
MAX_LAB_ACTIONS_PER_RANK = 10_000
MAX_LAB_PRINTED_CHARS = 3000
MAX_LAB_SHOWN_CHARS = 1500
# The memory-capped search (pplab.sim.search) simulates about a dozen candidate orders of 3 x P
# x M actions each: at this size that takes several seconds, the most a page or command waits.
MAX_SEARCH_ACTIONS = 20_000
