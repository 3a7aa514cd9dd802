"""Well-known models and nodes, and the published runs the planner is checked against.

Models: GPT-3 175B and the GPT configurations of Megatron-LM's weak-scaling study (Narayanan
et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
SC 2021, arXiv:2104.04473, Table 1; all with s = 2048 and V = 51,200, Sec. 5.1), plus the
22B model of Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
Models", 2022, arXiv:2205.05198, Table 3 (its 175B, 530B and 1T are the rows below).

Nodes: a DGX A100 80GB and a DGX H100, with the bandwidths per GPU and per direction derived
in each docstring. A preset cluster is one node; ``cluster.with_nodes(n)`` scales it.

    python -c "from pplab.planner.presets import MEGATRON_TABLE1; print(MEGATRON_TABLE1[6])"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pplab.planner.specs import ClusterSpec, ModelSpec

NARAYANAN = "Narayanan et al., SC 2021 (arXiv:2104.04473)"
KORTHIKANTI = "Korthikanti et al. 2022 (arXiv:2205.05198)"
MEGATRON_SEQ, MEGATRON_VOCAB = 2048, 51_200  # every model of both papers (Sec. 5.1; Sec. 6)


def _megatron(name: str, layers: int, hidden: int, heads: int, source: str) -> ModelSpec:
    return ModelSpec(name, layers, hidden, heads, MEGATRON_SEQ, MEGATRON_VOCAB, source=source)


_TABLE1 = f"{NARAYANAN}, Table 1"
PRESET_MODELS: dict[str, ModelSpec] = {
    model.name: model for model in (
        _megatron("gpt3-175b", 96, 12_288, 96,
                  "GPT-3, Brown et al. 2020 (arXiv:2005.14165), Table 2.1: 96 layers, "
                  "d_model 12288, 96 heads; Sec. 2.1: context 2048; vocabulary padded to "
                  "51,200 as in "
                  f"{NARAYANAN}, Sec. 5.1, whose eq. (2) gives 174.6B parameters"),
        _megatron("korthikanti-22b", 48, 6144, 64, f"{KORTHIKANTI}, Table 3"),
        _megatron("megatron-1.7b", 24, 2304, 24, _TABLE1),
        _megatron("megatron-3.6b", 30, 3072, 32, _TABLE1),
        _megatron("megatron-7.5b", 36, 4096, 32, _TABLE1),
        _megatron("megatron-18.4b", 40, 6144, 48, _TABLE1),
        _megatron("megatron-39.1b", 48, 8192, 64, _TABLE1),
        _megatron("megatron-76.1b", 60, 10_240, 80, _TABLE1),
        _megatron("megatron-145.6b", 80, 12_288, 96, _TABLE1),
        _megatron("megatron-310.1b", 96, 16_384, 128, _TABLE1),
        _megatron("megatron-529.6b", 105, 20_480, 128,
                  f"{_TABLE1}; MT-NLG 530B, the 530B of {KORTHIKANTI}, Table 3"),
        _megatron("megatron-1t", 128, 25_600, 160,
                  f"{_TABLE1} (1008.0B); the 1T of {KORTHIKANTI}, Table 3"),
    )
}

PRESET_CLUSTERS: dict[str, ClusterSpec] = {
    cluster.name: cluster for cluster in (
        ClusterSpec(
            "dgx-a100-80gb", gpus_per_node=8, nodes=1, memory_gib=80, peak_tflops=312,
            intra_node_gbs=300, inter_node_gbs=25,
            source="NVIDIA A100 80GB SXM: 312 TFLOP/s dense bf16, NVLink 600 GB/s (both "
                   "directions together, so 300 per direction); DGX A100: 8 x 200 Gb/s HDR "
                   "InfiniBand per node, one card per GPU = 25 GB/s. The Selene nodes of "
                   f"{NARAYANAN}, Sec. 5 and {KORTHIKANTI}, Sec. 6"),
        ClusterSpec(
            "dgx-h100", gpus_per_node=8, nodes=1, memory_gib=80, peak_tflops=989,
            intra_node_gbs=450, inter_node_gbs=50,
            source="NVIDIA H100 SXM5 80GB: 989 TFLOP/s dense bf16 (1979 with sparsity), "
                   "NVLink 900 GB/s both directions = 450 per direction; DGX H100: 8 x 400 "
                   "Gb/s ConnectX-7 per node, one per GPU = 50 GB/s. The matmul efficiency "
                   "is the A100's: nothing in the tested tables measures an H100"),
    )
}


@dataclass(frozen=True)
class PublishedRun:
    """One configuration a paper ran, and what it measured.

    ``None`` marks what the paper does not state. ``tflops_per_gpu`` is the paper's achieved
    teraFLOP/s per GPU, counted with Megatron-LM's eq. (3) (the FLOPs a step executes with full
    recomputation); ``iteration_s`` the measured seconds per training step.
    """

    source: str
    model: str
    tp: int
    pp: int
    gpus: int
    global_batch: int
    microbatch: int | None
    schedule: str
    num_chunks: int | None
    recompute: str
    sequence_parallel: bool
    tflops_per_gpu: float | None = None
    iteration_s: float | None = None
    mfu: float | None = None
    parameters_billion: float | None = None

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.pp)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _table1(model: str, billions: float, tp: int, pp: int, gpus: int, batch: int,
            tflops: float) -> PublishedRun:
    # Sec. 5.1: "we use the interleaved pipeline schedule with the scatter/gather optimization";
    # eq. (3) "assumes activation recomputation". Microbatch size and chunks are not stated.
    schedule = "interleaved-1f1b" if pp > 1 else "1f1b"
    return PublishedRun(f"{NARAYANAN}, Table 1", model, tp, pp, gpus, batch, None, schedule,
                        None, "full", False, tflops_per_gpu=tflops, parameters_billion=billions)


# (model, parameters in billions, tp, pp, GPUs, global batch, achieved teraFLOP/s per GPU).
MEGATRON_TABLE1: tuple[PublishedRun, ...] = tuple(_table1(*row) for row in (
    ("megatron-1.7b", 1.7, 1, 1, 32, 512, 137),
    ("megatron-3.6b", 3.6, 2, 1, 64, 512, 138),
    ("megatron-7.5b", 7.5, 4, 1, 128, 512, 142),
    ("megatron-18.4b", 18.4, 8, 1, 256, 1024, 135),
    ("megatron-39.1b", 39.1, 8, 2, 512, 1536, 138),
    ("megatron-76.1b", 76.1, 8, 4, 1024, 1792, 140),
    ("megatron-145.6b", 145.6, 8, 8, 1536, 2304, 148),
    ("megatron-310.1b", 310.1, 8, 16, 1920, 2160, 155),
    ("megatron-529.6b", 529.6, 8, 35, 2520, 2520, 163),
    ("megatron-1t", 1008.0, 8, 64, 3072, 3072, 163),
))

# Table 2 of the same paper, PTD parallelism rows: GPT-3 (174.6B) with model-parallel size 96
# (tp = 8 inside a node, so pp = 12), global batch 1536, microbatch 1.
MEGATRON_TABLE2: tuple[PublishedRun, ...] = tuple(
    PublishedRun(f"{NARAYANAN}, Table 2", "gpt3-175b", 8, 12, gpus, 1536, 1,
                 "interleaved-1f1b", None, "full", False, tflops_per_gpu=tflops,
                 parameters_billion=174.6)
    for gpus, tflops in ((384, 153), (768, 149), (1536, 141))
)


def _table5(model, tp, pp, gpus, batch, microbatch, schedule, chunks, full_s, present_s, mfu):
    # Sec. 6: "the interleaving schedule with three interleaving stages for the 175B and 530B
    # models"; no data parallelism. "Full recompute" runs without sequence parallelism;
    # "present work" uses sequence parallelism with selective recomputation.
    common = (f"{KORTHIKANTI}, Tables 3 and 5", model, tp, pp, gpus, batch, microbatch,
              schedule, chunks)
    return (PublishedRun(*common, "full", False, iteration_s=full_s),
            PublishedRun(*common, "selective", True, iteration_s=present_s, mfu=mfu))


KORTHIKANTI_TABLE5: tuple[PublishedRun, ...] = sum((
    _table5("korthikanti-22b", 8, 1, 8, 4, 4, "1f1b", None, 1.42, 1.10, 0.415),
    _table5("gpt3-175b", 8, 8, 64, 64, 1, "interleaved-1f1b", 3, 18.13, 13.75, 0.514),
    _table5("megatron-529.6b", 8, 35, 280, 280, 1, "interleaved-1f1b", 3, 49.05, 37.83, 0.560),
    _table5("megatron-1t", 8, 64, 512, 512, 1, "1f1b", None, 94.42, 71.49, 0.563),
), ())


def _preset(table: dict, kind: str, name: str):
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} preset {name!r}; known: {', '.join(table)}") from None


def model_preset(name: str) -> ModelSpec:
    """The preset model ``name``; ValueError listing the known names otherwise."""
    return _preset(PRESET_MODELS, "model", name)


def cluster_preset(name: str) -> ClusterSpec:
    """The preset node ``name`` (one node); ValueError listing the known names otherwise."""
    return _preset(PRESET_CLUSTERS, "cluster", name)
