"""The one helper that multi-process tests use: spawn N gloo ranks and collect their results.

Starting torch dominates the cost on a small machine, so tests group several checks into one
spawn. Ranks meet through a rendezvous file in a fresh temporary directory and use one CPU
thread each, like the engine's own launcher.

    pytest -q tests/test_engine_parity.py
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import tempfile
import time
from datetime import timedelta


def _entry(rank, world_size, init_method, fn, args, messages):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=init_method, rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=120))
        result = fn(rank, world_size, *args)
        dist.barrier()
        dist.destroy_process_group()
        # Pickled here: torch's queue would share tensors by file descriptor, which dies
        # with this process.
        messages.put(("ok", rank, pickle.dumps(result)))
    except BaseException as error:
        messages.put(("error", rank, f"{type(error).__name__}: {error}"))
        messages.close()
        messages.join_thread()
        os._exit(1)


def run_ranks(world_size: int, fn, *args, timeout: float = 240.0) -> list:
    """Run ``fn(rank, world_size, *args)`` on every rank; return the results in rank order.

    ``fn`` must be importable by name (a module-level function), as spawn requires. A rank
    that raises or dies fails the call with that rank's message.
    """
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    messages = context.Queue()
    rendezvous = tempfile.mkdtemp(prefix="pplab-test-rdv-")
    processes = [context.Process(target=_entry, daemon=True,
                                 args=(rank, world_size, f"file://{rendezvous}/store", fn, args,
                                       messages))
                 for rank in range(world_size)]
    results: dict[int, object] = {}
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        while len(results) < world_size:
            # Looked at before reading: a rank that has exited has flushed its error message,
            # so only a rank that died without one is reported by its exit code.
            dead = [r for r, p in enumerate(processes) if p.exitcode not in (None, 0)]
            try:
                kind, rank, payload = messages.get(timeout=0.2)
            except queue.Empty:
                if dead:
                    raise AssertionError(f"rank {dead[0]} died with exit code "
                                         f"{processes[dead[0]].exitcode}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"ranks gave no result within {timeout} s") from None
                continue
            if kind == "error":
                raise AssertionError(f"rank {rank} failed: {payload}")
            results[rank] = pickle.loads(payload)
    finally:
        if len(results) < world_size:
            for process in processes:
                if process.is_alive():
                    process.terminate()
        for process in processes:
            process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join()
        shutil.rmtree(rendezvous, ignore_errors=True)
    return [results[rank] for rank in range(world_size)]


def single_process_reference(config):
    """Train the whole model in one process on the whole batch, same seed and optimizer.

    Returns (loss per step, gradients of the first step by parameter name): the answer every
    pipelined, tensor-parallel or data-parallel run owes us.
    """
    import torch

    from pplab.engine.data import make_task
    from pplab.engine.launch import make_plan
    from pplab.engine.model import build_reference_model, lm_loss

    plan = make_plan(config)
    model = build_reference_model(plan.model, torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    task = make_task(config.task, config.seq_len, config.text)
    losses, first_grads = [], None
    for step in range(config.steps):
        tokens, targets = task.batch(config.seed, step, plan.batch_size)
        loss = lm_loss(model(tokens), targets)
        loss.backward()
        losses.append(loss.item())
        if first_grads is None:
            first_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        optimizer.step()
        optimizer.zero_grad()
    return losses, first_grads
