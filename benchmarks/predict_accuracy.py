"""How well a calibrated cost model predicts real steps on this machine: replay and what-if.

What it teaches: a simulator is worth what its errors are. This script runs the engine (CPU,
gloo, one thread per rank) on many configurations, calibrates each from its own events and
prints the predicted step time beside the measured one:

0. bundled: every run in data/runs replayed from its own calibration, and each predicted
   from the calibrations of the others of its model (what-if); recorded once on a quiet
   machine, so these figures are the same everywhere and need no quiet machine now;
1. replay, ranks <= cores: each run predicted from its own calibration (gpipe, 1f1b,
   zb-h1, interleaved-1f1b on 2 ranks; a tensor-parallel and a data-parallel run on 2);
2. what-if: one calibration run (1f1b, m=8) predicts gpipe, 1f1b, zb-h1 and
   interleaved-1f1b at m in {2, 4, 8, 16}, each measured too; the order of the
   configurations by predicted step time is compared with their order by measured time;
3. more ranks than cores (4 ranks on this machine's 2): replay and what-if, predicted with
   processor sharing.

Each table gives the median |error|, the signed median (a bias shows here: every error of
one sign), the worst, and the coverage of the predictions' 80 % intervals: the share of all
measured steps (every steady step of every configuration, not only the medians) inside their
prediction's interval, which should be near 80 %. Its "model error" is what
``pplab.calibration.interval.MODEL_ERROR`` should hold for that kind of prediction.

On a machine others share, two runs started a minute apart measure two different machines.
So all configurations of a table run in one set of processes and take turns step by step
(as benchmarks/engine_vs_torch.py does): load from elsewhere falls on all of them alike. A
step is measured from its first forward to its last optimizer step (barriers between steps),
median over the steps after the first two. Timings belong here, not in the tests.

    python benchmarks/predict_accuracy.py
    python benchmarks/predict_accuracy.py --steps 10 --sections replay
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SECTIONS = ("bundled", "replay", "what-if", "defaults", "shared")
# pplab train's own sizes (4 rows of 16 tokens, d_model 64, 4 layers, 4 microbatches): what a
# first run of the lab measures, where Python and messages weigh most against computation
DEFAULTS = {"rows": 4, "seq_len": 16, "d_model": 64, "layers": 4}
# this benchmark's own sizes (its options' defaults): 256 KiB of activations per message
BENCHMARK_SIZES = {"rows": 8, "seq_len": 64, "d_model": 128, "layers": 4}
# Measured steps per configuration at those sizes (at least): their steps are 15-25 ms and
# varied from 15.8 to 35.5 ms within one configuration's 40 (2026-12-08); 120 take 15 s.
DEFAULTS_STEPS = 120
# Measured steps per configuration at the other sizes. A median of 8 was not enough on this
# lab's 2-core machine: within one run of 8, gpipe p=2 m=2's steps took 76 to 185 ms
# (2026-12-08), and every what-if from the calibration run inherits its median's draw (gpipe
# m=8 measured from 0.2 % faster to 17 % slower than 1f1b m=8 across six runs of 8 steps,
# where the model puts it 1-4 % slower).
STEPS = 24
WHAT_IF_SCHEDULES = ("gpipe", "1f1b", "zb-h1", "interleaved-1f1b")
WHAT_IF_MICROBATCHES = (2, 4, 8, 16)
WARM_UP_ROUNDS = 2  # steps each configuration runs before its measured ones


@dataclass(frozen=True)
class Config:
    label: str
    schedule: str
    pp: int
    microbatches: int
    chunks: int | None = None
    tp: int = 1
    dp: int = 1
    message_groups: str = "per-direction"  # benchmarks/message_groups.py compares "one"


def _request(config: Config, options: dict):
    from pplab.engine.request import check_request
    from pplab.engine.train_config import TrainConfig

    return check_request(TrainConfig(
        schedule=config.schedule, pp_size=config.pp, microbatches=config.microbatches,
        chunks=config.chunks, tp_size=config.tp, dp_size=config.dp, steps=1,
        layers=options["layers"], d_model=options["d_model"], heads=4,
        seq_len=options["seq_len"], batch_size=options["rows"] * config.microbatches * config.dp,
        message_groups=config.message_groups, out="-"))


def _rank(rank: int, world: int, report, configs: list[Config], options: dict) -> list:
    """One rank: every configuration set up once, then one step of each per round, in an
    order that rotates, with a barrier around each step. Returns each one's Event rows."""
    from pplab.engine.rank_setup import setup_rank

    contexts = [setup_rank(_request(config, options), rank) for config in configs]
    take_turns(contexts, options["steps"] + WARM_UP_ROUNDS, report)
    return [context.recorder.rows_for_timeline() for context in contexts]


def take_turns(contexts: list, rounds: int, report) -> None:
    """``rounds`` steps of every rank context, one step of each per round in an order that
    rotates, a barrier around each step (benchmarks/message_groups.py takes turns so too)."""
    import torch.distributed as dist

    for round_ in range(rounds):
        shift = round_ % len(contexts)
        for index in list(range(shift, len(contexts))) + list(range(shift)):
            dist.barrier()
            contexts[index].executor.run_sync_step(round_)
        dist.barrier()
        report("step", step=round_)  # progress: the supervisor's timeout means "stuck"


def measure(configs: list[Config], world: int, options: dict, save: Path | None = None) -> dict:
    """Run ``configs`` side by side on ``world`` processes; a Run per label, in memory."""
    from pplab.engine.machine import cpu_count
    from pplab.engine.supervisor import spawn_ranks
    from pplab.runs.run_dirs import Run
    from pplab.schedules import schedule_to_csv_text
    from pplab.sim.simulator import schedule_summary
    from pplab.timeline import events_frame

    per_rank = spawn_ranks(world, _rank, configs, options, backend="gloo", timeout=900)
    runs = {}
    for index, config in enumerate(configs):
        request = _request(config, options)
        rows = [row for rank_rows in per_rank for row in rank_rows[index]]
        events = events_frame(rows)
        events = events[events["step"] >= WARM_UP_ROUNDS - 1]  # keep one warm-up step
        meta = {"source": "measured", "time_unit": "s",
                "schedule": {**schedule_summary(request.schedule),
                             "csv": schedule_to_csv_text(request.schedule)},
                "world_size": world, "pp_size": config.pp, "tp_size": config.tp,
                "dp_size": config.dp, "layer_split": list(request.layer_split),
                "config": {"device": "cpu"},
                "hardware": {"device": "cpu", "cpu_count": cpu_count(),
                             "hosts": [socket.gethostname()]}}
        runs[config.label] = Run(Path(config.label), events.reset_index(drop=True), meta)
        if save is not None:  # to look at later: pplab predict DIR/<label>
            from pplab.runs.run_dirs import save_run

            save_run(save / config.label.replace(" ", "_").replace("(", "").replace(")", ""),
                     runs[config.label].events, meta)
    return runs


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'configuration':34} {'predicted':>10} {'measured':>10} {'error':>9} "
          f"{'80 % interval':>17} {'steps in':>9}")
    print(f"{'':34} {'(ms)':>10} {'(ms)':>10} {'':>9} {'(ms)':>17}")


def _row(label: str, prediction, calibration) -> tuple[float, tuple]:
    """Print one configuration; its error and (interval, measured steps) for the coverage."""
    predicted, measured = prediction.step_time, calibration.measured.step_time
    error = (predicted - measured) / measured
    bar, times = prediction.interval, list(calibration.measured.times)
    inside = sum(bar.holds(t) for t in times)
    span = f"{1e3 * bar.low:.1f}-{1e3 * bar.high:.1f}"
    print(f"{label:34} {1e3 * predicted:10.2f} {1e3 * measured:10.2f} {100 * error:+8.1f} % "
          f"{span:>17} {inside:>4} of {len(times)}", flush=True)
    return error, (bar, times)


def _summary(errors: list[float], covered: list[tuple]) -> None:
    from pplab.calibration.interval import coverage, model_error

    share = coverage(covered)
    spread = model_error(errors)
    print(f"median |error| {100 * statistics.median(abs(e) for e in errors):.1f} %, signed "
          f"median {100 * statistics.median(errors):+.1f} %, worst "
          f"{100 * max(abs(e) for e in errors):.1f} %; 80 % intervals hold "
          + ("no step" if share is None else f"{100 * share:.0f} % of "
             f"{sum(len(t) for _, t in covered)} measured steps")
          + ("" if spread is None else f"; model error {100 * spread:.1f} %"))


def bundled_predictions() -> dict[str, list[tuple]]:
    """Tables 0a and 0b as (label, prediction, the measured run's calibration): the bundled
    runs' replays, and their what-ifs within one model and microbatch size."""
    from pplab.calibration import fit, replay, what_if
    from pplab.runs.resources import bundled_runs_dir
    from pplab.runs.run_dirs import load_run

    runs = {p.name: load_run(p) for p in sorted(bundled_runs_dir().iterdir())
            if (p / "meta.json").is_file()}
    calibrations = {name: fit(run) for name, run in runs.items()}
    replays = [(name, replay(run, calibrations[name]), calibrations[name])
               for name, run in runs.items()]

    def model(run) -> tuple:  # one model and microbatch size: what a what-if keeps
        config = run.metadata["config"]
        return (config["layers"], config["d_model"], config["seq_len"],
                run.metadata["batch_size"] // config["microbatches"])

    what_ifs = []
    for base, run in runs.items():
        for name, target in runs.items():
            wanted = target.metadata["schedule"]
            if name == base or model(target) != model(run) or wanted["is_async"] \
                    or run.metadata["schedule"]["is_async"]:
                continue
            prediction = what_if(run, calibrations[base], schedule=wanted["name"],
                                 microbatches=wanted["num_microbatches"],
                                 chunks=wanted["num_chunks"], pp_size=wanted["pp_size"])
            what_ifs.append((f"{base} -> {name}", prediction, calibrations[name]))
    return {"0a": replays, "0b": what_ifs}


def bundled_tables() -> None:
    titles = {"0a": "0a. replay of every bundled run (data/runs, recorded on a quiet machine)",
              "0b": "0b. what-if among bundled runs of one model, each from another's "
                    "calibration"}
    for key, rows in bundled_predictions().items():
        _header(titles[key])
        errors, covered = [], []
        for label, prediction, calibration in rows:
            error, pair = _row(label, prediction, calibration)
            errors.append(error)
            covered.append(pair)
        _summary(errors, covered)


def replay_configs() -> list[Config]:
    return [Config("gpipe p=2 m=8", "gpipe", 2, 8), Config("1f1b p=2 m=8", "1f1b", 2, 8),
            Config("zb-h1 p=2 m=8", "zb-h1", 2, 8),
            Config("interleaved-1f1b p=2 v=2 m=8", "interleaved-1f1b", 2, 8, chunks=2),
            Config("tp=2 (pp=1) m=4", "gpipe", 1, 4, tp=2),
            Config("dp=2 (pp=1) m=4", "gpipe", 1, 4, dp=2)]


def what_if_configs() -> list[Config]:
    return [Config(f"{name} p=2{' v=2' if name.startswith('interleaved') else ''} m={m}", name,
                   2, m, 2 if name.startswith("interleaved") else None)
            for name in WHAT_IF_SCHEDULES for m in WHAT_IF_MICROBATCHES]


def replay_table(runs: dict, configs: list[Config], title: str) -> None:
    from pplab.calibration import fit, replay

    _header(title)
    errors, covered = [], []
    for config in configs:
        calibration = fit(runs[config.label])
        error, pair = _row(config.label, replay(runs[config.label], calibration), calibration)
        errors.append(error)
        covered.append(pair)
    _summary(errors, covered)


def what_if_table(runs: dict, base: str, configs: list[Config], title: str) -> None:
    from pplab.calibration import fit, what_if

    calibration = fit(runs[base])
    _header(title)
    results, covered = [], []
    for config in configs:
        prediction = what_if(runs[base], calibration, schedule=config.schedule,
                             microbatches=config.microbatches, chunks=config.chunks)
        own = fit(runs[config.label])
        error, pair = _row(config.label, prediction, own)
        covered.append(pair)
        results.append((config.label, prediction.step_time, own.measured.step_time, error))
    _summary([r[3] for r in results], covered)
    _order_report(results)


def _order_report(results: list[tuple[str, float, float, float]]) -> None:
    """Do the predictions rank the configurations as the measurements do?"""
    by_predicted = [r[0] for r in sorted(results, key=lambda r: r[1])]
    by_measured = [r[0] for r in sorted(results, key=lambda r: r[2])]
    pairs = [(a, b) for i, a in enumerate(results) for b in results[i + 1:]]
    swapped = [(a[0], b[0], abs(a[2] - b[2]) / min(a[2], b[2])) for a, b in pairs
               if (a[1] - b[1]) * (a[2] - b[2]) < 0]
    print(f"order by predicted step time equals order by measured: "
          f"{'yes' if by_predicted == by_measured else 'no'}; "
          f"{len(swapped)} of {len(pairs)} pairs swapped")
    for a, b, apart in swapped:
        print(f"  swapped: {a} and {b} (measured {100 * apart:.1f} % apart)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="measured steps per configuration")
    parser.add_argument("--rows", type=int, default=BENCHMARK_SIZES["rows"],
                        help="rows per microbatch")
    parser.add_argument("--layers", type=int, default=BENCHMARK_SIZES["layers"])
    parser.add_argument("--d-model", type=int, default=BENCHMARK_SIZES["d_model"])
    parser.add_argument("--seq-len", type=int, default=BENCHMARK_SIZES["seq_len"])
    parser.add_argument("--save", type=Path, metavar="DIR",
                        help="also save every measured run under DIR (a new folder)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"which tables, of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"predict_accuracy: unknown sections {unknown}; choose from {SECTIONS}",
              file=sys.stderr)
        return 2
    if min(args.steps - 1, args.rows, args.layers - 3, args.d_model, args.seq_len) < 1:
        print("predict_accuracy: needs at least 2 steps, 4 layers and positive sizes",
              file=sys.stderr)
        return 2
    options = {k: getattr(args, k) for k in ("steps", "rows", "layers", "d_model", "seq_len")}
    from pplab.engine.supervisor import RankFailed

    if set(sections) - {"bundled"}:
        print(f"CPU, gloo, 1 thread per rank, {os.cpu_count()} cores; {args.rows} x "
              f"{args.seq_len} tokens per microbatch, d_model {args.d_model}, {args.layers} "
              f"layers; {args.steps} measured steps per configuration, taking turns; "
              f"before: {_load()}")
    try:
        if "bundled" in sections:
            bundled_tables()
        if "defaults" in sections:
            configs = [Config(c.label.replace("m=8", "m=4"), c.schedule, c.pp, 4, c.chunks)
                       for c in replay_configs()[:4]]
            # steps of 20-60 ms move by a third from one to the next on a shared machine: 8
            # of them gave medians 25 % apart between two runs a minute apart, 40 steady them
            sizes = {**options, **DEFAULTS, "steps": max(options["steps"], DEFAULTS_STEPS)}
            started = time.monotonic()
            runs = measure(configs, 2, sizes, args.save / "defaults" if args.save else None)
            print(f"\n(measured {len(configs)} configurations at pplab train's default sizes, "
                  f"{sizes['steps']} steps each, in {time.monotonic() - started:.0f} s; after: "
                  f"{_load()})")
            replay_table(runs, configs, "1d. replay on 2 ranks at pplab train's default sizes "
                                        "(4 x 16 tokens, d_model 64, 4 layers)")
        if "replay" in sections or "what-if" in sections:
            configs = {c.label: c for c in replay_configs() + what_if_configs()
                       if "what-if" in sections or c in replay_configs()}
            started = time.monotonic()
            runs = measure(list(configs.values()), 2, options,
                           args.save / "2-ranks" if args.save else None)
            print(f"(measured {len(configs)} configurations in "
                  f"{time.monotonic() - started:.0f} s; after: {_load()})")
            if "replay" in sections:
                replay_table(runs, replay_configs(),
                             "1. replay on 2 ranks (ranks <= cores): each run from its own "
                             "calibration")
            if "what-if" in sections:
                what_if_table(runs, "1f1b p=2 m=8", what_if_configs(),
                              "2. what-if on 2 ranks from one calibration run (1f1b p=2 m=8)")
        if "shared" in sections:
            shared = [Config(f"{name} p=4 m={m}", name, 4, m)
                      for name, m in (("1f1b", 8), ("gpipe", 8), ("zb-h1", 8), ("1f1b", 4),
                                      ("1f1b", 16))]
            started = time.monotonic()
            runs = measure(shared, 4, options, args.save / "4-ranks" if args.save else None)
            print(f"\n(measured {len(shared)} configurations on 4 ranks in "
                  f"{time.monotonic() - started:.0f} s; after: {_load()})")
            replay_table(runs, shared[:2], f"3a. replay, 4 ranks on {os.cpu_count()} cores "
                                           f"(processor sharing)")
            what_if_table(runs, "1f1b p=4 m=8", shared[1:],
                          "3b. what-if, 4 ranks, from one calibration run (1f1b p=4 m=8)")
    except (ValueError, RankFailed) as error:
        print(f"predict_accuracy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
