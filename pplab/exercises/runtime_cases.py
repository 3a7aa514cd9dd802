"""The runtime lab's hidden cases: how deep, how many microbatches, which weights.

A case is a pipeline depth ``p``, a microbatch count ``m`` and a seed: pplab's toy GPT with
one block per stage (``pplab.engine.partition``), float64, the "reverse" task's tokens, two
rows of eight tokens per microbatch. Every learner's file runs on the fixed case p = 2,
m = 4, then on one drawn from the learner's name (p = 3 or 4): a runtime that hard-codes
two ranks or four microbatches fails there. This module imports no torch until a case's
batches are made (``pplab exercise show`` stays quick).

    python -c "from pplab.exercises.runtime_cases import hidden_cases; print(hidden_cases('ada'))"
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from pplab.engine.train_config import ModelConfig
from pplab.exercises.core import course_key, variant_seed

SEQ_LEN = 8
ROWS = 2  # rows per microbatch
LEARNING_RATE = 0.1  # plain SGD: weights after the step are the first ones - lr * gradient
TOLERANCE = dict(rtol=1e-9, atol=1e-12)  # float64: summation order moves the last bits only
FIXED_CASES = ((2, 4),)
DRAWN_CASES = 1


@dataclass(frozen=True)
class RuntimeCase:
    """One hidden case: p stages (one rank each), m microbatches, the model's seed."""

    p: int
    m: int
    seed: int

    @property
    def config(self) -> ModelConfig:
        return ModelConfig(seq_len=SEQ_LEN, d_model=16, n_heads=2, n_layers=self.p, d_ff=32,
                           seed=self.seed)

    @property
    def split(self) -> tuple[int, ...]:
        return (1,) * self.p

    @property
    def activation_shape(self) -> tuple[int, int, int]:
        return (ROWS, SEQ_LEN, self.config.d_model)

    def batches(self) -> list:
        """(tokens, targets) of every microbatch."""
        from pplab.engine.data import make_task, microbatches

        tokens, targets = make_task("reverse", SEQ_LEN).batch(self.seed, 0, ROWS * self.m)
        return microbatches(tokens, targets, self.m)

    def describe(self) -> str:
        return f"p = {self.p}, m = {self.m}"


def hidden_cases(learner: str | None = None, course: str | None = None) -> list[RuntimeCase]:
    """The fixed small case, then one drawn for the learner: 3 or 4 stages."""
    rng = random.Random(variant_seed("runtime-lab", learner or "anyone", course_key(course)))
    cases = [RuntimeCase(p, m, rng.randrange(1000)) for p, m in FIXED_CASES]
    for _ in range(DRAWN_CASES):
        p = rng.randint(3, 4)
        cases.append(RuntimeCase(p, rng.randint(2, 2 * p), rng.randrange(1000)))
    return cases


def request_for(case: RuntimeCase) -> dict:
    """What every rank of the case is told (its rank, port and runs are added per spawn)."""
    batches = case.batches()
    return {"world_size": case.p, "model": asdict(case.config),
            "split": list(case.split), "activation_shape": list(case.activation_shape),
            "tokens": [t.tolist() for t, _ in batches],
            "targets": [t.tolist() for _, t in batches], "lr": LEARNING_RATE}
