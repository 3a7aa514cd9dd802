"""Cutting the model into pipeline stages.

What it teaches: a stage is a contiguous run of layers; the first also owns the embeddings,
the last the final norm and head. Splits need not be equal (``--split 3,3,2``): an unequal
split is how a lesson shows one slow stage setting the pace of the whole pipe. Every stage is
sliced from ONE full model built from the seed, so the pipeline starts from exactly the
reference model's weights.

    python -c "from pplab.engine.request import split_layers; print(split_layers(8, 3))"
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pplab.engine.model import ToyGPT, build_reference_model, embed_tokens
from pplab.engine.train_config import ModelConfig


class Stage(nn.Module):
    """One slice of ToyGPT; keeps the reference model's attribute names for its parts."""

    def __init__(self, model: ToyGPT, layers: range, index: int, num_stages: int) -> None:
        super().__init__()
        self.index = index
        self.is_first = index == 0
        self.is_last = index == num_stages - 1
        self.layer_range = layers
        if self.is_first:
            self.embed, self.pos = model.embed, model.pos
        self.blocks = nn.ModuleList(model.blocks[i] for i in layers)
        if self.is_last:
            self.ln_f, self.head = model.ln_f, model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_first:
            x = embed_tokens(self.embed, self.pos, x)
        for block in self.blocks:
            x = block(x)
        if self.is_last:
            x = self.head(self.ln_f(x))
        return x

    def reference_names(self) -> dict[str, str]:
        """This stage's parameter names mapped to the reference model's names."""
        names = {}
        for name, _ in self.named_parameters():
            if name.startswith("blocks."):
                local, rest = name.split(".", 2)[1:]
                names[name] = f"blocks.{self.layer_range[int(local)]}.{rest}"
            else:
                names[name] = name
        return names


def build_stage(config: ModelConfig, layer_split: Sequence[int], stage_index: int,
                dtype: torch.dtype = torch.float32) -> Stage:
    """Stage ``stage_index`` of the model cut by ``layer_split`` (from ``split_layers``)."""
    if sum(layer_split) != config.n_layers:
        raise ValueError(
            f"the split sums to {sum(layer_split)} layers; the model has {config.n_layers}")
    if not 0 <= stage_index < len(layer_split):
        raise ValueError(f"stage {stage_index} does not exist; the split has {len(layer_split)}")
    start = sum(layer_split[:stage_index])
    model = build_reference_model(config, dtype)
    return Stage(model, range(start, start + layer_split[stage_index]), stage_index,
                 len(layer_split))
