"""A single-process reference of asynchronous pipelines: the whole model in one process, each
stage's weights kept per version, each microbatch run on the versions the paper says.

PipeDream (Narayanan et al., SOSP 2019, Sec. 3.3): stage s of p runs microbatch j's forward
and backward on version j - (p-1-s) (its newest when the forward runs, in 1F1B order), and
updates after every microbatch. PipeDream-2BW (Narayanan et al., ICML 2021, Sec. 3.1): every
stage runs every microbatch of step t on version t - 1 and updates once per step:
W(t+1) = W(t) - lr grad f(W(t-1)). The versions are written here from those rules, not read
from pplab, so a test comparing the engine with this can fail.
"""

from __future__ import annotations


def paper_version(schedule_name: str, p: int, m: int, stage: int, microbatch: int) -> int:
    """The weight version stage ``stage`` runs ``microbatch`` with, by the papers' rules."""
    if schedule_name == "pipedream":
        return max(0, microbatch - (p - 1 - stage))
    if schedule_name == "pipedream-2bw":
        return max(0, microbatch // m - 1)
    raise ValueError(schedule_name)


def stage_of_parameter(name: str, layer_split) -> int:
    """The stage holding the reference model's parameter ``name``."""
    if name.startswith(("embed.", "pos.")):
        return 0
    if name.startswith("blocks."):
        layer, bound = int(name.split(".")[1]), 0
        for stage, count in enumerate(layer_split):
            bound += count
            if layer < bound:
                return stage
    return len(layer_split) - 1


def versioned_reference(config, schedule_name: str, steps: int) -> list[float]:
    """Mean loss per step of ``config`` trained with the paper's versions, in one process."""
    import torch
    from torch.func import functional_call

    from pplab.engine.data import make_task, microbatches
    from pplab.engine.model import build_reference_model, lm_loss
    from pplab.engine.request import check_request

    request = check_request(config)
    p, m = request.schedule.pp_size, request.schedule.microbatches_per_step
    update_every = 1 if schedule_name == "pipedream" else m
    model = build_reference_model(request.model, torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stage_of = {n: stage_of_parameter(n, request.layer_split) for n, _ in model.named_parameters()}
    task = make_task(config.task, config.seq_len, config.text)
    snapshots = {0: {n: q.detach().clone() for n, q in model.named_parameters()}}
    losses = []
    for step in range(steps):
        tokens, targets = task.batch(config.seed, step, request.batch_size)
        step_losses = []
        for index, (x, y) in enumerate(microbatches(tokens, targets, m)):
            j = step * m + index
            params = {n: snapshots[paper_version(schedule_name, p, m, stage_of[n], j)][n]
                      .clone().requires_grad_(True) for n in stage_of}
            loss = lm_loss(functional_call(model, params, (x,)), y)
            (loss / m).backward()
            step_losses.append(loss.item())
            for name, param in model.named_parameters():
                grad = params[name].grad
                param.grad = grad if param.grad is None else param.grad + grad
            if (j + 1) % update_every == 0:
                optimizer.step()
                optimizer.zero_grad()
                snapshots[(j + 1) // update_every] = {
                    n: q.detach().clone() for n, q in model.named_parameters()}
        losses.append(sum(step_losses) / len(step_losses))
    return losses
