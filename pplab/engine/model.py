"""A toy GPT small enough to train on a laptop CPU, shaped like the real thing.

What it teaches: a pipeline cuts a model between layers. Token and position embeddings, a
stack of identical pre-norm transformer blocks, a final LayerNorm and a head: every stage of
a pipeline is a contiguous slice of this list, and the tensors crossing a cut all have the
shape (microbatch, seq_len, d_model). One seed fixes the weights, so every rank builds the
same model and a single-process reference can check the pipeline's gradients exactly.

    python -c "from pplab.engine.model import *; print(build_reference_model(ModelConfig()))"
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pplab.engine.train_config import ModelConfig

__all__ = ["ModelConfig", "ToyGPT", "Block", "CausalSelfAttention", "MLP",
           "build_reference_model", "lm_loss"]


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        # Width is read from the weights so a tensor-parallel shard with fewer heads still works.
        local = self.qkv.weight.shape[0] // 3
        heads = self.n_heads
        q, k, v = self.qkv(x).split(local, dim=2)
        q, k, v = (t.view(batch, seq, heads, local // heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, local))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm transformer block (GPT-2, Radford et al. 2019)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config.d_model, config.n_heads)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config.d_model, config.d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ToyGPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = nn.Embedding(config.seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = embed_tokens(self.embed, self.pos, tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def _init_weights(model: ToyGPT) -> None:
    # GPT-2's scheme: N(0, 0.02), and residual projections scaled by 1/sqrt(2 * layers) so the
    # residual stream does not grow with depth.
    residual_std = 0.02 / math.sqrt(2 * model.config.n_layers)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(param)
        elif ".ln" in name or name.startswith("ln_"):
            nn.init.ones_(param)
        elif name.endswith("proj.weight"):
            nn.init.normal_(param, 0.0, residual_std)
        else:
            nn.init.normal_(param, 0.0, 0.02)


def embed_tokens(embed: nn.Embedding, pos: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
    """Token embeddings plus learned positions: what the first stage does before its blocks."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return embed(tokens) + pos(positions)


def build_reference_model(config: ModelConfig, dtype: torch.dtype = torch.float32) -> ToyGPT:
    """The whole model, initialised from ``config.seed`` alone: the same weights on every rank
    and in the single-process reference, whatever ran before. The CPU random state is put
    back afterwards, so building a model never shifts the data a caller draws next."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(config.seed)
        model = ToyGPT(config)
        _init_weights(model)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.to(dtype)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over all tokens, mean: the one loss the engine and the reference share."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
