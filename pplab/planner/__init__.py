"""A 3D-parallelism planner at GPT-3 scale: the lab's schedules and simulator at real sizes.

Give it a model, a cluster and a global batch; it tries every pp x tp x dp of the GPU count,
microbatch size, schedule (gpipe, 1f1b, interleaved-1f1b with v chunks, zb-h1) and
recomputation (none, selective, full), estimates each layout's memory per GPU stage by stage,
times the ones that fit with pplab's simulator over FLOP- and bandwidth-derived durations,
and ranks them. It checks itself against Narayanan et al. (SC 2021) and Korthikanti et al.
(2022); docs/planner.md lists the published numbers, ours beside them, and the assumptions.

The modules, in the order a step is estimated:

* ``specs``, ``presets``, ``spec_files``  model and cluster, well-known ones, your own file
* ``flops``     FLOPs of a step and per-layer durations on one GPU
* ``memory``    weights, gradients, optimizer states, activations held by each schedule
* ``timing``    one pipeline through the simulator, the data-parallel all-reduce
* ``estimate``  one layout: the rules, memory, traffic, step time, MFU
* ``search``    every layout, the ones that fit, ranked; ``explain`` says why

    python -c "from pplab.planner import *; r = plan(PRESET_MODELS['gpt3-175b'],
    PRESET_CLUSTERS['dgx-a100-80gb'].with_nodes(512), 1536); print(r.best.describe())"
"""

from pplab.planner.estimate import SCHEDULES, evaluate
from pplab.planner.explain import Comparison, compare, explain
from pplab.planner.flops import RECOMPUTE, hardware_flops, model_flops
from pplab.planner.memory import StageMemory, in_flight, layer_activation_bytes
from pplab.planner.presets import (
    KORTHIKANTI_TABLE5,
    MEGATRON_TABLE1,
    MEGATRON_TABLE2,
    PRESET_CLUSTERS,
    PRESET_MODELS,
    PublishedRun,
    cluster_preset,
    model_preset,
)
from pplab.planner.results import Candidate, Exclusion, Layout, StepTime, Traffic
from pplab.planner.search import NoFeasiblePlan, PlanResult, plan
from pplab.planner.spec_files import PlanSpec, load_spec
from pplab.planner.specs import MATMUL_EFFICIENCY, ClusterSpec, ModelSpec
from pplab.planner.timing import pipeline_events

__all__ = [
    "ModelSpec", "ClusterSpec", "PlanSpec", "load_spec", "MATMUL_EFFICIENCY",
    "PRESET_MODELS", "PRESET_CLUSTERS", "model_preset", "cluster_preset",
    "PublishedRun", "MEGATRON_TABLE1", "MEGATRON_TABLE2", "KORTHIKANTI_TABLE5",
    "plan", "evaluate", "explain", "compare", "pipeline_events",
    "PlanResult", "NoFeasiblePlan", "Candidate", "Layout", "StepTime", "Traffic", "Exclusion",
    "StageMemory", "Comparison", "SCHEDULES", "RECOMPUTE",
    "model_flops", "hardware_flops", "layer_activation_bytes", "in_flight",
]
