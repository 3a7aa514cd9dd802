"""What the planner plans for: a transformer, a cluster of GPU nodes, and their units.

A ``ModelSpec`` is a GPT-style decoder (Megatron-LM's layout: learned position embeddings,
word embeddings tied with the output layer, an MLP of width ``ffn``, default 4h). A
``ClusterSpec`` is identical nodes of GPUs: memory, peak FLOP/s and two link speeds, one inside
a node (NVLink) and one between nodes (InfiniBand), both per GPU and per direction. Both check
themselves and raise ValueError with the number that is wrong, in one line.

Units, said once: memory in GiB (2**30 bytes, the way an "80 GB" A100 counts), bandwidth in
GB/s (10**9 bytes per second), compute in TFLOP/s (10**12 FLOP per second), time in seconds.

    python -c "from pplab.planner import PRESET_MODELS as M; print(M['gpt3-175b'].describe())"
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from pplab import limits
from pplab.formulas.parallel import block_parameters

GIB = 2**30
GB = 10**9
TERA = 10**12

# Bytes of one element of weights, gradients and activations for each training precision.
PRECISION_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# Adam's optimizer state per parameter. Mixed precision keeps an fp32 master copy of the
# weights and two fp32 moments: 12 bytes, so 2 + 2 + 12 = 16 bytes per parameter with the
# 16-bit weights and gradients (ZeRO, Rajbhandari et al., SC 2020, arXiv:1910.02054, Sec. 3.1).
# Plain fp32 training needs no master copy: the two moments, 8 bytes.
OPTIMIZER_BYTES = {"bf16": 12, "fp16": 12, "fp32": 8}

# The share of peak FLOP/s that the counted matrix multiplies reach, one number for every
# model and cluster. Chosen from a measurement the tested tables do not contain: Korthikanti
# et al. 2022 (arXiv:2205.05198), Table 4, time one layer of their 22B model (h=6144, 64
# heads, s=2048, b=4, tp=8 on A100s) at 7.7 ms forward + 11.9 ms backward = 19.6 ms. Our cost
# model gives 19.6 ms for that layer at 55 % of peak plus its tensor-parallel all-reduces at
# the nominal NVLink speed. Everything the FLOP count leaves out (softmax, layer norms,
# dropout, kernel launches) hides inside this factor; it is never tuned per configuration.
MATMUL_EFFICIENCY = 0.55


def check_whole(what: str, value: object, high: int, low: int = 1) -> int:
    """A whole number in [low, high]; one line naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if value < low:
        raise ValueError(f"{what} must be at least {low}, got {value}")
    if value > high:
        raise ValueError(f"{what} {value:,} is over the planner's limit of {high:,}")
    return value


def check_positive(what: str, value: object, high: float = 1e9) -> float:
    """A finite number in (0, high]; one line naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    if value > high:
        raise ValueError(f"{what} {value:g} is over the planner's limit of {high:g}")
    return float(value)


@dataclass(frozen=True)
class ModelSpec:
    """A GPT-style transformer: L layers of width h with a heads, sequence s, vocabulary V.

    ``ffn`` is the MLP width (None means 4h, as in GPT-3 and Megatron-LM). ``precision`` is
    the element type of weights, gradients and activations: bf16, fp16 or fp32.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    seq_len: int
    vocab: int
    ffn: int | None = None
    precision: str = "bf16"
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a model needs a name, got {self.name!r}")
        check_whole(f"{self.name}: layers", self.layers, limits.MAX_PLANNED_LAYERS)
        check_whole(f"{self.name}: hidden size", self.hidden, limits.MAX_PLANNED_WIDTH)
        check_whole(f"{self.name}: heads", self.heads, limits.MAX_PLANNED_WIDTH)
        check_whole(f"{self.name}: sequence length", self.seq_len, limits.MAX_PLANNED_SEQ_LEN)
        check_whole(f"{self.name}: vocabulary", self.vocab, limits.MAX_PLANNED_VOCAB)
        if self.ffn is not None:
            check_whole(f"{self.name}: ffn size", self.ffn, limits.MAX_PLANNED_WIDTH)
        if self.hidden % self.heads:
            raise ValueError(f"{self.name}: hidden size {self.hidden} is not divisible by "
                             f"{self.heads} heads")
        if self.precision not in PRECISION_BYTES:
            raise ValueError(f"{self.name}: precision {self.precision!r} is not one of "
                             f"{', '.join(PRECISION_BYTES)}")

    @property
    def ffn_size(self) -> int:
        return self.ffn if self.ffn is not None else 4 * self.hidden

    @property
    def element_bytes(self) -> int:
        """Bytes of one weight, gradient or activation element."""
        return PRECISION_BYTES[self.precision]

    @property
    def optimizer_bytes(self) -> int:
        """Bytes of Adam state per parameter (master weights and moments)."""
        return OPTIMIZER_BYTES[self.precision]

    @property
    def parameters(self) -> int:
        """All parameters: the layers, word and position embeddings, the final layer norm.

        The output layer shares the word embedding's weights, so it adds none. For ffn = 4h
        this is Megatron-LM's eq. (2), 12 l h^2 (1 + 13/(12h) + (V+s)/(12lh)) (Narayanan et
        al., SC 2021), plus the 2h of the final layer norm that eq. (2) leaves out.
        """
        h = self.hidden
        return (self.layers * block_parameters(h, self.ffn_size)
                + (self.vocab + self.seq_len) * h + 2 * h)

    def describe(self) -> str:
        """``GPT-3 175B: 96 layers, h 12288, 96 heads, s 2048, V 51200, bf16, 174.6B params``"""
        ffn = "" if self.ffn is None else f", ffn {self.ffn}"
        return (f"{self.name}: {self.layers} layers, h {self.hidden}, {self.heads} heads, "
                f"s {self.seq_len}, V {self.vocab}{ffn}, {self.precision}, "
                f"{self.parameters / 1e9:.1f}B parameters")

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["parameters"] = self.parameters
        return out


@dataclass(frozen=True)
class ClusterSpec:
    """Identical nodes of GPUs and the two link speeds a training step uses.

    ``intra_node_gbs`` and ``inter_node_gbs`` are GB/s per GPU in one direction: NVLink inside
    a node, the GPU's share of the node's network cards between nodes. ``efficiency`` is the
    share of ``peak_tflops`` the matrix multiplies reach (``MATMUL_EFFICIENCY`` unless told).
    """

    name: str
    gpus_per_node: int
    nodes: int
    memory_gib: float
    peak_tflops: float
    intra_node_gbs: float
    inter_node_gbs: float
    efficiency: float = MATMUL_EFFICIENCY
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a cluster needs a name, got {self.name!r}")
        check_whole(f"{self.name}: GPUs per node", self.gpus_per_node,
                    limits.MAX_PLANNED_GPUS_PER_NODE)
        check_whole(f"{self.name}: nodes", self.nodes, limits.MAX_PLANNED_NODES)
        check_positive(f"{self.name}: memory per GPU (GiB)", self.memory_gib, 1e6)
        check_positive(f"{self.name}: peak TFLOP/s per GPU", self.peak_tflops, 1e6)
        check_positive(f"{self.name}: intra-node GB/s", self.intra_node_gbs, 1e6)
        check_positive(f"{self.name}: inter-node GB/s", self.inter_node_gbs, 1e6)
        check_positive(f"{self.name}: efficiency", self.efficiency, 1.0)

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def sustained_flops(self) -> float:
        """FLOP/s the counted matrix multiplies run at: peak x efficiency."""
        return self.peak_tflops * TERA * self.efficiency

    @property
    def intra_bandwidth(self) -> float:
        """Bytes per second per GPU per direction inside a node."""
        return self.intra_node_gbs * GB

    @property
    def inter_bandwidth(self) -> float:
        """Bytes per second per GPU per direction between nodes."""
        return self.inter_node_gbs * GB

    def with_nodes(self, nodes: int) -> ClusterSpec:
        """The same nodes, ``nodes`` of them."""
        return replace(self, nodes=nodes)

    def describe(self) -> str:
        return (f"{self.name}: {self.nodes} x {self.gpus_per_node} GPUs = {self.num_gpus}, "
                f"{self.memory_gib:g} GiB, {self.peak_tflops:g} TFLOP/s peak "
                f"({self.efficiency:.0%} assumed for matmuls), {self.intra_node_gbs:g} GB/s "
                f"in a node, {self.inter_node_gbs:g} GB/s between nodes")

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["num_gpus"] = self.num_gpus
        return out


def check_global_batch(global_batch: object) -> int:
    return check_whole("global batch", global_batch, limits.MAX_PLANNED_GLOBAL_BATCH)
