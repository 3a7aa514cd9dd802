"""Training data a pipeline can learn from in a few hundred CPU steps.

What it teaches: every rank must agree on the batch without talking. The first stage needs
the tokens and the last stage needs the targets, so each rank rebuilds the same batch from
(seed, step); the executor then cuts it into microbatches and data-parallel replicas.

Tasks: ``reverse`` (random digits, a separator, then the digits reversed), ``sort`` (the same
with the digits sorted) and ``text`` (any text file as a character-level corpus). The model
predicts every next token; only the second half of a synthetic sequence is predictable, so
the loss falls from ln(16) = 2.77 towards about half of that.

    python -c "from pplab.engine.data import *; print(make_task('reverse', 12).batch(0, 0, 2))"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pplab.engine.train_config import SYNTHETIC_VOCAB, text_alphabet


@dataclass
class Task:
    name: str
    seq_len: int
    vocab_size: int
    corpus: torch.Tensor | None = None
    alphabet: str = ""

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, targets), each (batch_size, seq_len) int64, a pure function of its inputs."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        if self.corpus is not None:
            starts = torch.randint(0, len(self.corpus) - self.seq_len, (batch_size,),
                                   generator=generator)
            windows = torch.stack([self.corpus[s:s + self.seq_len + 1] for s in starts.tolist()])
            return windows[:, :-1], windows[:, 1:]
        separator = self.vocab_size - 1
        half = (self.seq_len + 1) // 2  # digits, separator, answer (cut short if odd length)
        digits = torch.randint(0, separator, (batch_size, half), generator=generator)
        answer = digits.flip(1) if self.name == "reverse" else digits.sort(dim=1).values
        sep = torch.full((batch_size, 1), separator)
        sequence = torch.cat([digits, sep, answer], dim=1)[:, :self.seq_len + 1]
        return sequence[:, :-1], sequence[:, 1:]


def make_task(name: str, seq_len: int, text: str | None = None) -> Task:
    if name in ("reverse", "sort"):
        return Task(name, seq_len, SYNTHETIC_VOCAB)
    if name != "text":
        raise ValueError(f"unknown task {name!r}; choose reverse, sort or text")
    if text is None:
        raise ValueError("--task text needs --text FILE")
    alphabet = text_alphabet(text, seq_len)
    content = Path(text).read_text(encoding="utf-8", errors="replace")
    index = {ch: i for i, ch in enumerate(alphabet)}
    corpus = torch.tensor([index[ch] for ch in content], dtype=torch.long)
    return Task("text", seq_len, len(alphabet), corpus, alphabet)


def microbatches(tokens: torch.Tensor, targets: torch.Tensor, num_microbatches: int,
                 dp_rank: int = 0, dp_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This replica's contiguous 1/dp of the batch, cut into equal microbatches."""
    batch = tokens.shape[0]
    if batch % (dp_size * num_microbatches):
        raise ValueError(f"batch size {batch} is not divisible by {dp_size} replicas x "
                         f"{num_microbatches} microbatches")
    share = batch // dp_size
    tokens = tokens[dp_rank * share:(dp_rank + 1) * share]
    targets = targets[dp_rank * share:(dp_rank + 1) * share]
    return list(zip(tokens.chunk(num_microbatches), targets.chunk(num_microbatches), strict=True))
