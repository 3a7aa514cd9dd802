"""What went wrong in one run of a learner's runtime, said as the root cause.

``judge_run`` reads what every rank recorded (``pplab.exercises.runtime_task``) against one
process's step (``pplab.exercises.runtime_reference``) and names the first fault, in the
order in which one fault causes the others' symptoms:

1. a message to or from a rank that is not a neighbour (stage r talks to r - 1 and r + 1);
2. a rank that raised (the ranks waiting on it are echoes, not causes);
3. a deadlock: every rank still running waits, and on what (a blocking gloo send returns
   only when the receiver has posted the matching receive);
4. the optimizer stepped too early, twice, or never;
5. the first forward or backward, in time across all ranks, that ran out of the schedule's
   order or computed what one process does not, with where its input came from;
6. the losses, then every weight's gradient, then the weights after the step.

    (used by pplab.exercises.runtime_lab)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pplab.exercises.runtime_cases import TOLERANCE, RuntimeCase

if TYPE_CHECKING:
    from pplab.exercises.runtime_reference import Reference

KIND, START, END, PEER, MB, STEP, VALUES = range(7)  # the columns of a recorded event
COMPUTE = ("F", "B")
WHAT = {"F": "forward", "B": "backward"}
# What gloo says on a rank whose peer failed first: the echo, not the cause.
ECHOES = ("Connection closed by peer", "pair closure", "Connection reset")


def _neighbour_fault(rank: int, p: int, run: dict) -> str | None:
    for call, peer in run.get("peers", []):
        if abs(peer - rank) != 1 or not 0 <= peer < p:
            said = "sent to" if "send" in call else "received from"
            return (f"rank {rank} {said} rank {peer} ({call}); in a pipeline rank r talks to "
                    f"its neighbours only: activations go to rank r + 1 and gradients to rank "
                    f"r - 1 (p = {p})")
    return None


def _waiting_on(run: dict, actions: list) -> str:
    """What a stuck rank waits in, with the message it is about where the schedule says."""
    pending = run.get("pending") or "a wait"
    done = sum(e[KIND] in COMPUTE for e in run.get("events", []))
    if pending.startswith("send") and done:
        kind, mb = actions[done - 1]
        what = "activation" if kind == "F" else "gradient"
        return f"{pending} (the {what} of microbatch {mb}, after {kind}{mb})"
    if pending.startswith("recv") and done < len(actions):
        kind, mb = actions[done]
        what = "activation" if kind == "F" else "gradient"
        return f"{pending} (the {what} of microbatch {mb}, for {kind}{mb})"
    return pending


def _deadlock(waiting: dict[int, str], seconds: str) -> str:
    said = "; ".join(f"rank {rank} waits in {what}" for rank, what in sorted(waiting.items()))
    hint = ""
    if all(what.startswith("send") for what in waiting.values()) and len(waiting) > 1:
        hint = (": every rank sends and none receives, and a blocking send returns only when "
                "its receiver has posted the matching receive")
    return f"deadlock ({seconds}): {said}{hint}"


def _optimizer_fault(rank: int, run: dict, m: int, steps: int) -> str | None:
    done = run.get("steps", 0)
    if done == 0:
        return f"rank {rank} never stepped the optimizer (ctx.optimizer.step())"
    if done > steps:
        return (f"rank {rank} stepped the optimizer {done} times in {steps} training "
                f"step{'s' if steps > 1 else ''}: once per step, after its last backward")
    early = run.get("backwards_at_first_step")
    if early is not None and early < m:
        return (f"rank {rank} stepped the optimizer after {early} of its {m} backwards: the "
                f"step must wait for every microbatch's gradient, or the later backwards use "
                f"changed weights")
    return None


def _received(run: dict, peer: int) -> list[list | None]:
    """The values rank received from ``peer``, in the order they arrived."""
    return [e[VALUES] for e in run["events"] if e[PEER] == peer and e[STEP] == 0
            and (e[KIND] == "recv" and e[VALUES] is not None or e[KIND] == "wait"
                 and e[VALUES] is not None)]


def _compute_fault(case: RuntimeCase, ref: Reference, runs: dict[int, dict],
                   actions: dict[int, list]) -> str | None:
    found: list[tuple[float, str]] = []
    last = case.p - 1
    for rank, run in runs.items():
        done = [e for e in run["events"] if e[KIND] in COMPUTE and e[STEP] == 0]
        kinds = [e[KIND] for e in done]
        want = actions[rank]
        for position, (event, (kind, mb)) in enumerate(zip(done, want, strict=False)):
            label = f"{kind}{mb}"
            if event[KIND] != kind:
                found.append((event[START], f"rank {rank}'s action {position + 1} was a "
                                            f"{WHAT[event[KIND]]} where the schedule says "
                                            f"{label}"))
                break
            problem = _wrong_values(case, ref, runs, rank, kind, mb, event, position)
            if problem:
                found.append((event[START], problem))
                break
        else:
            if len(kinds) != len(want):
                found.append((float("inf"), f"rank {rank} ran {kinds.count('F')} forwards and "
                                            f"{kinds.count('B')} backwards; the schedule gives "
                                            f"it {case.m} of each"))
        if rank == last and not found:
            losses = dict(tuple(pair) for pair in run.get("losses", []))
            for mb in range(case.m):
                if mb not in losses:
                    return f"rank {rank} never called ctx.loss(output, {mb})"
    return min(found)[1] if found else None


def _wrong_values(case, ref, runs, rank, kind, mb, event, position) -> str | None:
    where = f"rank {rank}'s {WHAT[kind]} of microbatch {mb} (its action {position + 1})"
    if kind == "B" and rank == case.p - 1:  # its backward starts from ctx.loss's value
        found = event[MB] if event[MB] >= 0 else None
    else:  # a forward's output, or the gradient a backward was given
        found = ref.which("outputs" if kind == "F" else "grad_outputs", rank, event[VALUES])
    if found == mb:
        return None
    if found is not None:
        return (f"rank {rank} ran the {WHAT[kind]} of microbatch {found} where the schedule "
                f"says {kind}{mb}")
    if kind == "B" and rank == case.p - 1:
        return f"{where} was not a backward of ctx.loss(output, {mb})"
    if kind == "B":
        return (f"{where} was given a gradient one process does not compute (what rank "
                f"{rank + 1} sent back is not the gradient of its input x; did it detach x and "
                f"call x.requires_grad_()?)")
    if rank == 0:
        return (f"{where} gives activations one process does not: its input is not "
                f"ctx.inputs[{mb}]")
    arrived = _received(runs[rank], rank - 1)
    forwards = [e for e in runs[rank]["events"] if e[KIND] == "F" and e[STEP] == 0]
    index = forwards.index(event)
    came = ref.which("outputs", rank - 1, arrived[index]) if index < len(arrived) else None
    source = (f"tensor number {index + 1} it received from rank {rank - 1} is the "
              f"activation of microbatch {came}" if came is not None else
              f"what it received from rank {rank - 1} is no microbatch's activation")
    return f"{where} gives activations one process does not: {source}"


def _tensor_fault(rank: int, run: dict, ref: Reference) -> str | None:
    import torch

    for key, table, what in (("grads", ref.grads, "gradient"),
                             ("params", ref.weights_after, "weight after the step")):
        for name, values in (run.get(key) or {}).items():
            want = table[name]
            got = None if values is None else torch.tensor(values, dtype=torch.float64)
            if got is None or got.numel() != want.numel() or not torch.allclose(
                    got, want.reshape(-1), **TOLERANCE):
                gap = ("none" if got is None else
                       f"largest difference {float((got - want.reshape(-1)).abs().max()):.3g}"
                       if got.numel() == want.numel() else "another shape")
                return f"rank {rank}'s {what} of {name} is not one process's ({gap})"
    return None


def judge_run(case: RuntimeCase, ref: Reference, runs: dict[int, dict],
              actions: dict[int, list], steps: int = 1) -> str | None:
    """The root cause of what went wrong in the run (every rank's record), or None."""
    for rank, run in sorted(runs.items()):
        fault = _neighbour_fault(rank, case.p, run)
        if fault:
            return fault
    for rank, run in sorted(runs.items()):  # an early step breaks the backwards after it
        early = run.get("backwards_at_first_step")
        if early is not None and early < case.m:
            return _optimizer_fault(rank, run, case.m, steps)
    raised = {r: run["error"] for r, run in runs.items() if "error" in run}
    if raised:
        causes = [r for r in sorted(raised) if not any(w in raised[r] for w in ECHOES)]
        rank = (causes or sorted(raised))[0]
        waiting = sorted(r for r in runs if r != rank and ("timed_out" in runs[r]
                                                           or r in raised))
        echo = f" (ranks {', '.join(map(str, waiting))} then failed waiting on it)" \
            if waiting else ""
        return f"rank {rank}: {raised[rank]}{echo}"
    stuck = {r: _waiting_on(run, actions[r]) for r, run in runs.items() if "timed_out" in run}
    if stuck:
        seconds = next(run["timed_out"] for run in runs.values() if "timed_out" in run)
        return _deadlock(stuck, seconds.split(" in ")[0])
    for rank, run in sorted(runs.items()):
        fault = _optimizer_fault(rank, run, case.m, steps)
        if fault:
            return fault
    fault = _compute_fault(case, ref, runs, actions)
    if fault:
        return fault
    last = runs[case.p - 1]
    for mb, value in last.get("losses", []):
        if abs(value - ref.losses[mb]) > 1e-9 * max(1.0, abs(ref.losses[mb])):
            return (f"the loss of microbatch {mb} is {value:.12g}; one process gives "
                    f"{ref.losses[mb]:.12g}")
    for rank, run in sorted(runs.items()):
        fault = _tensor_fault(rank, run, ref)
        if fault:
            return fault
    return None
