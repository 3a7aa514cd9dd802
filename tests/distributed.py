"""The one helper that multi-process tests use: N gloo ranks through the engine's supervisor.

Starting torch dominates the cost on a small machine, so tests group several checks into one
spawn. The ranks are started and watched by ``pplab.engine.supervisor`` exactly as
``pplab train`` starts its own: a rendezvous file in a fresh temporary directory, one CPU
thread each, every wait bounded, the first failure reported as "rank R failed: ...".

    pytest -q tests/test_engine_parity.py
"""

from __future__ import annotations

from pplab.engine.supervisor import spawn_ranks


def run_ranks(world_size: int, fn, *args, timeout: float = 240.0) -> list:
    """Run ``fn(rank, world_size, report, *args)`` on every rank; the results in rank order.

    ``fn`` must be importable by name (a module-level function), as spawn requires. A rank
    that raises, dies or goes ``timeout`` seconds without a word fails the call (RankFailed)
    with that rank's message.
    """
    return spawn_ranks(world_size, fn, *args, backend="gloo", timeout=timeout)


def single_process_reference(config):
    """Train the whole model in one process on the whole batch, same seed and optimizer.

    Returns (loss per step, gradients of the first step by parameter name): the answer every
    pipelined, tensor-parallel or data-parallel run owes us.
    """
    import torch

    from pplab.engine.data import make_task
    from pplab.engine.model import build_reference_model, lm_loss
    from pplab.engine.request import check_request

    request = check_request(config)
    model = build_reference_model(request.model, torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    task = make_task(config.task, config.seq_len, config.text)
    losses, first_grads = [], None
    for step in range(config.steps):
        tokens, targets = task.batch(config.seed, step, request.batch_size)
        loss = lm_loss(model(tokens), targets)
        loss.backward()
        losses.append(loss.item())
        if first_grads is None:
            first_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        optimizer.step()
        optimizer.zero_grad()
    return losses, first_grads
