"""``pplab train``: train the toy GPT on real processes and save the measured timeline.

What it teaches: the same schedule the simulator draws, run for real. Each rank is a process;
the run directory holds every forward, backward, send, receive and wait with its measured
start and end, ready to lay beside the prediction.

    pplab train --schedule 1f1b --stages 4 --microbatches 8 --steps 20
"""

from __future__ import annotations

import argparse
import json
import sys


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
                        help="run directory (default runs/<time>-<schedule>-p<P>m<M>); "
                             "- saves nothing")
    parser.add_argument("--no-record", action="store_true",
                        help="record no events (to measure the cost of recording)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before a stuck run is stopped (default 300)")
    parser.add_argument("--fault", metavar="RANK:STEP:raise|kill",
                        help="make one rank fail on purpose, to watch the run go down")
    parser.add_argument("--json-progress", action="store_true",
                        help="one JSON object per line on stdout instead of a progress bar")
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace):
    from .config import TrainConfig, parse_split

    return TrainConfig(
        schedule=args.schedule, csv=args.csv, pp_size=_depth(args),
        microbatches=args.microbatches, chunks=args.chunks, steps=args.steps,
        layers=args.layers, split=parse_split(args.split) if args.split else None,
        batch_size=args.batch_size, seq_len=args.seq_len, d_model=args.d_model,
        heads=args.heads, d_ff=args.d_ff, task=args.task, text=args.text, lr=args.lr,
        device=args.device, dtype=args.dtype, seed=args.seed, out=args.out,
        record=not args.no_record, timeout=args.timeout, tp_size=args.tp, dp_size=args.dp,
        fault=args.fault)


def _depth(args: argparse.Namespace) -> int | None:
    from pplab.schedules import depth_from_flags

    if args.csv and (args.stages is not None or args.chunks is not None):
        raise ValueError("--stages and --chunks do not apply to --csv (the CSV fixes them)")
    return depth_from_flags(args.schedule, args.pp_size, args.stages, args.chunks)


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.json_progress:
        _emit({"event": "error", "message": message})
    print(f"pplab train: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from .launch import RankFailed, make_plan, run_training

    try:
        config = config_from_args(args)
        make_plan(config)
    except ValueError as error:
        return _fail(args, str(error).splitlines()[0], 2)

    bar = None
    if args.json_progress:
        def on_step(step: int, steps: int, loss: float) -> None:
            _emit({"event": "step", "step": step + 1, "steps": steps, "loss": loss})
    else:
        from tqdm import tqdm

        def on_step(step: int, steps: int, loss: float) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=steps, desc="train", unit="step", file=sys.stderr)
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
    failure = None
    try:
        result = run_training(config, on_step)
    except ValueError as error:
        failure = (str(error).splitlines()[0], 2)
    except RankFailed as error:
        failure = (str(error), 1)
    except KeyboardInterrupt:
        failure = ("interrupted; no run directory was written", 130)
    if bar is not None:
        bar.close()
    if failure is not None:
        return _fail(args, *failure)
    losses = result.losses
    if losses and not args.json_progress:
        print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps",
              file=sys.stderr)
    if result.run_dir is None:
        return 0  # --out - saves nothing; under torchrun only rank 0 writes the run
    if args.json_progress:
        _emit({"event": "done", "run_dir": str(result.run_dir)})
    else:
        print(result.run_dir)
    return 0
