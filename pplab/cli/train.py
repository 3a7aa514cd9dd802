"""``pplab train``: train the toy GPT on real processes and save the measured timeline.

What it teaches: the same schedule the simulator draws, run for real. Each rank is a process;
the run directory holds every forward, backward, send, receive and wait with its measured
start and end, ready to lay beside the prediction. The command only parses and prints: the
request is checked by ``pplab.engine.request`` (no torch, so a mistake is one line at once) and
run by
``pplab.engine.launch``. It says what it is doing from the first second: what it starts,
each rank as it joins, each step with its loss (``--json-progress``: one JSON object per
line instead, as the app reads it, in strict JSON: a diverged loss is null). Everything that
can be checked is checked before the first process starts: the numbers (``pplab.limits``),
the machine (``pplab.engine.machine``) and the run directory (``launch.output_dir``);
``--dry-run`` stops there.

    pplab train --schedule 1f1b --stages 4 --microbatches 8 --steps 20
    pplab train --schedule 1f1b --pp 4 --tp 2 --dry-run
"""

from __future__ import annotations

import argparse
import json
import sys

from pplab.engine.train_config import MESSAGE_GROUPS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, task and optimizer options that `train` and `compare` share, one set of
    defaults for both (the reverse task learns with these on a CPU in a few hundred steps)."""
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, help="MLP width (default 4 x d-model)")
    parser.add_argument("--task", default="reverse", help="reverse, sort or text")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam learning rate (default 1e-3; reverse stalls above 2e-3)")
    parser.add_argument("--dtype", default="float32", help="float32 or float64")
    parser.add_argument("--seed", type=int, default=0)


def add_oversubscribe_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--oversubscribe", action="store_true",
                        help="start more than 4 ranks per core (or over 64) anyway")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train the toy GPT with a pipeline schedule on real processes",
        description="Train a toy GPT with one process per rank (gloo on CPU, NCCL on GPUs) and "
                    "write the measured run directory. Under torchrun the same command runs "
                    "in place on every machine.")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--schedule", default="1f1b", help="registered schedule (default 1f1b)")
    what.add_argument("--csv", metavar="FILE", help="a schedule written as CSV instead")
    parser.add_argument("--pp", type=int, dest="pp_size", metavar="P",
                        help="pipeline depth: ranks of one pipeline (default 2; a CSV sets it)")
    parser.add_argument("--stages", type=int, metavar="S",
                        help="model stages, P x V (another way to give the depth)")
    parser.add_argument("--microbatches", type=int, help="microbatches per step (default 4)")
    parser.add_argument("--chunks", type=int, help="model chunks per rank (interleaved)")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--layers", type=int, help="transformer blocks (default: max(4, stages))")
    parser.add_argument("--split", metavar="3,3,2", help="layers per stage (default balanced)")
    parser.add_argument("--batch-size", type=int,
                        help="global batch (default 4 x microbatches x dp)")
    add_model_arguments(parser)
    parser.add_argument("--text", metavar="FILE", help="corpus for --task text")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks per stage")
    parser.add_argument("--dp", type=int, default=1, help="data-parallel replicas")
    parser.add_argument("--out", metavar="DIR",
                        help="run directory (default $PPLAB_RUNS_DIR or runs/, then "
                             "<time>-<schedule>-p<P>m<M>); - saves nothing")
    parser.add_argument("--no-record", action="store_true",
                        help="record no events (to measure the cost of recording)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds without progress before a stuck run is stopped "
                             "(default 300, at most a day)")
    parser.add_argument("--fault", metavar="RANK:STEP:raise|kill",
                        help="make one process (its global rank) fail on purpose")
    parser.add_argument("--clip-grad", type=float, metavar="NORM",
                        help="clip the gradient to this global norm (default: no clipping)")
    parser.add_argument("--optimizer-sync", choices=("barrier", "post"), default="barrier",
                        help="how ranks agree on the gradient norm and NaN/Inf check: barrier "
                             "(default: all wait, then step) or post (step at once, validate "
                             "during the next step, roll back if needed: Qi et al. 2024, Sec. 4)")
    parser.add_argument("--force-rollback-at", metavar="STEP[:inf|spike]",
                        help="spoil the last stage's gradient at STEP (non-finite, or a spike "
                             "to clip) so that post-validation must roll back")
    parser.add_argument("--message-groups", choices=MESSAGE_GROUPS, default=MESSAGE_GROUPS[0],
                        help="gloo process groups for pipeline messages: one per direction "
                             "(default: two ranks sending to each other at once never share a "
                             "connection) or one, the world's, to measure what that costs")
    add_oversubscribe_argument(parser)
    add_dry_run_argument(parser)
    parser.add_argument("--json-progress", action="store_true",
                        help="one JSON object per line on stdout instead of a progress bar")
    parser.set_defaults(func=run)
    return parser


def add_dry_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything (numbers, machine, output folder), start nothing")


def strict_json(value: object, indent: int | None = None) -> str:
    """JSON as every reader takes it: NaN and infinities become null."""
    from pplab.runs.run_dirs import strict_json_value

    return json.dumps(strict_json_value(value), indent=indent, allow_nan=False)


def config_from_args(args: argparse.Namespace):
    from pplab.engine.train_config import TrainConfig, parse_split

    return TrainConfig(
        schedule=args.schedule, csv=args.csv, pp_size=_depth(args),
        microbatches=args.microbatches, chunks=args.chunks, steps=args.steps,
        layers=args.layers, split=parse_split(args.split) if args.split else None,
        batch_size=args.batch_size, seq_len=args.seq_len, d_model=args.d_model,
        heads=args.heads, d_ff=args.d_ff, task=args.task, text=args.text, lr=args.lr,
        device=args.device, dtype=args.dtype, seed=args.seed, out=args.out,
        record=not args.no_record, timeout=args.timeout, tp_size=args.tp, dp_size=args.dp,
        fault=args.fault, optimizer_sync=args.optimizer_sync, clip_grad=args.clip_grad,
        force_rollback_at=args.force_rollback_at, message_groups=args.message_groups)


def train_argv(config) -> list[str]:
    """The ``pplab train`` arguments that give back ``config``: ``config_from_args``'s inverse,
    for whoever starts a run as a command (the app does)."""
    argv = ["--csv", config.csv] if config.csv else ["--schedule", config.schedule]
    optional = {"--pp": config.pp_size, "--microbatches": config.microbatches,
                "--chunks": config.chunks, "--layers": config.layers,
                "--batch-size": config.batch_size, "--d-ff": config.d_ff, "--text": config.text,
                "--out": config.out, "--fault": config.fault,
                "--clip-grad": config.clip_grad, "--force-rollback-at": config.force_rollback_at,
                "--split": ",".join(map(str, config.split)) if config.split else None}
    always = {"--steps": config.steps, "--seq-len": config.seq_len,
              "--d-model": config.d_model, "--heads": config.heads, "--task": config.task,
              "--lr": config.lr, "--dtype": config.dtype, "--seed": config.seed,
              "--device": config.device, "--timeout": config.timeout, "--tp": config.tp_size,
              "--dp": config.dp_size, "--optimizer-sync": config.optimizer_sync,
              "--message-groups": config.message_groups}
    for flag, value in {**optional, **always}.items():
        if value is not None:
            argv += [flag, str(value)]
    return argv + ([] if config.record else ["--no-record"])


def _depth(args: argparse.Namespace) -> int | None:
    from pplab.schedules import depth_from_flags

    if args.csv and (args.stages is not None or args.chunks is not None):
        raise ValueError("--stages and --chunks do not apply to --csv (the CSV fixes them)")
    return depth_from_flags(args.schedule, args.pp_size, args.stages, args.chunks)


class _Say:
    """Progress for a person (stderr lines and a bar) or for a program (JSON on stdout)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar = None

    def __call__(self, event: str, message: str, **fields) -> None:
        if self.as_json:
            print(strict_json({"event": event, "message": message, **fields}), flush=True)
        else:
            prefix = "warning: " if event == "warning" else ""
            print(f"pplab train: {prefix}{message}", file=sys.stderr, flush=True)

    def progress(self, event: dict) -> None:
        if self.as_json:
            print(strict_json(event), flush=True)
        elif event["event"] in ("started", "ready"):
            self._count(event["event"], event[event["event"]], event["ranks"])
        elif event["event"] == "step":
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event["steps"], desc="train", unit="step", file=sys.stderr)
            self.bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
            self.bar.update(1)

    def _count(self, phase: str, done: int, ranks: int) -> None:
        """``ranks started 3/8``: rewritten in place on a terminal; in a log, first and last."""
        line = f"pplab train: ranks {phase} {done}/{ranks}"
        if sys.stderr.isatty():
            print(f"\r{line}", end="\n" if done == ranks else "", file=sys.stderr, flush=True)
        elif done in (1, ranks):
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fail(say: _Say, message: str, code: int) -> int:
    if say.as_json:
        say("error", message)
    print(f"pplab train: {message}", file=sys.stderr)
    return code


def _start_line(request) -> str:
    from pplab.engine.machine import launched_by_torchrun

    if launched_by_torchrun():
        return f"{request.describe()} as one rank under torchrun, starting…"
    kind = "GPU" if request.config.device == "cuda" else "CPU"
    world = request.topology.world_size
    return (f"{request.describe()} on {world} {kind} process{'es' if world > 1 else ''}, "
            f"starting ranks…")


def machine_warning(request, oversubscribe: bool) -> str | None:
    """Refuse an absurd rank count (ValueError), or warn when ranks will share cores/GPUs."""
    from pplab.engine import machine

    if machine.launched_by_torchrun():
        return None  # torchrun placed the ranks; this process is only one of them
    slots = machine.rank_slots(request.config.device)
    machine.check_not_absurd(request.topology, request.config.device, slots, oversubscribe)
    return machine.sharing_warning(request.topology, request.config.device, slots)


def run(args: argparse.Namespace) -> int:
    from pplab.engine.launch import output_dir
    from pplab.engine.request import check_request

    say = _Say(args.json_progress)
    try:
        config = config_from_args(args)
        request = check_request(config)
        warning = machine_warning(request, args.oversubscribe)
        run_dir = output_dir(request)
    except ValueError as error:
        return _fail(say, str(error).splitlines()[0], 2)
    if args.dry_run:
        if config.device == "cuda":
            from pplab.engine.launch import check_device

            try:
                check_device(request)  # the one check that needs torch
            except ValueError as error:
                return _fail(say, str(error), 2)
        where = "saves nothing" if run_dir is None else f"would be saved in {run_dir}"
        say("dry-run", f"{request.describe()} on {request.topology.world_size} process(es): "
                       f"every check passed; the run {where}; nothing was started")
        if warning:
            say("warning", warning)
        return 0
    # Said before torch is imported (seconds on a small machine): nothing long is silent.
    say("start", _start_line(request), run=request.describe(), ranks=request.topology.world_size,
        device=config.device)
    if warning:
        say("warning", warning)

    from pplab.engine.launch import run_training
    from pplab.engine.supervisor import RankFailed, Stopped, stop_on_sigterm

    failure = None
    try:
        with stop_on_sigterm():
            result = run_training(request, run_dir, say.progress)
    except ValueError as error:
        failure = (str(error).splitlines()[0], 2)
    except RankFailed as error:
        failure = (str(error), 1)
    except KeyboardInterrupt:
        failure = ("interrupted; no run directory was written", 130)
    except Stopped:
        failure = ("stopped; no run directory was written", 143)
    say.close()
    if failure is not None:
        return _fail(say, *failure)
    losses = result.losses
    if losses and not args.json_progress:
        print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps",
              file=sys.stderr)
    if result.run_dir is None:
        return 0  # --out - saves nothing; under torchrun only rank 0 writes the run
    if args.json_progress:
        print(strict_json({"event": "done", "run_dir": str(result.run_dir)}), flush=True)
    else:
        print(result.run_dir)
    return 0
