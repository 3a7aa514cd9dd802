"""What splitting a backward costs in this engine: F, B, I and W of one stage, side by side.

Zero-bubble schedules split a stage's backward B into I (the input gradient) and W (the
weight gradients, later). In pplab's engine (``pplab.engine.stage``) a stage that splits
keeps each Linear's and LayerNorm's input and output gradient through Python hooks during F
and I, and W multiplies them out; a stage that does not split runs plain autograd. What that
costs beside B depends on the sizes: the hooks are a fixed cost per layer and per action, the
products grow with the tokens and the width. A what-if from a run that never split
(1F1B to ZB-H1) has to charge I and W from B; ``pplab.calibration.costs`` does it with the
figures this benchmark prints.

One process, one thread (as a rank of ``pplab train`` on CPU), two copies of one stage of the
toy GPT (one splitting, one not), each microbatch run through both taking turns, so a change
in the machine's speed meets both alike. Printed per size: the median F, B, I and W in ms,
F with hooks over F without, (I + W) / B and I / (I + W); then, over every row, what
``pplab.calibration.costs`` charges per hooked module: F's extra (the median), and I + W - B
as a fixed part plus a part per byte of the microbatch's activation (least squares).

    .venv/bin/python benchmarks/split_backward.py
    .venv/bin/python benchmarks/split_backward.py --repeats 60 --sizes default,benchmark
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from predict_accuracy import BENCHMARK_SIZES, DEFAULTS

# The bundled runs' model (data/runs/*-p2m8: 4 x 64 tokens per microbatch, d_model 256).
BUNDLED_SIZES = {"rows": 4, "seq_len": 64, "d_model": 256, "layers": 4}
SIZES = {"default": DEFAULTS, "benchmark": BENCHMARK_SIZES, "bundled": BUNDLED_SIZES}
WARM_UP = 5  # microbatches through both copies before the timed ones


def stage_pair(sizes: dict, stages: int, index: int):
    """(plain, splitting) runtimes of stage ``index`` of ``stages``, same weights."""
    import torch

    from pplab.engine.partition import build_stage
    from pplab.engine.stage import StageRuntime
    from pplab.engine.train_config import ModelConfig

    config = ModelConfig(seq_len=sizes["seq_len"], d_model=sizes["d_model"],
                         n_layers=sizes["layers"], d_ff=4 * sizes["d_model"])
    split = [sizes["layers"] // stages] * stages
    pair = []
    for splitting in (False, True):
        module = build_stage(config, split, index)
        optimizer = torch.optim.Adam(module.parameters())
        pair.append(StageRuntime(module, optimizer, 1.0, split_backward=splitting))
    assert pair[1].split_weights, "this stage cannot split its weights"
    return config, pair


def measure(sizes: dict, stages: int, index: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of F and B (plain) and F, I and W (splitting), and their ratios."""
    import torch

    config, (plain, splitting) = stage_pair(sizes, stages, index)
    generator = torch.Generator().manual_seed(0)
    shape = (sizes["rows"], sizes["seq_len"], sizes["d_model"])
    x = torch.randn(shape, generator=generator)
    targets = torch.randint(0, config.vocab_size, shape[:2], generator=generator)
    last = plain.is_last
    grad = None if last else torch.randn(shape, generator=generator)
    times: dict[str, list[float]] = {kind: [] for kind in ("F", "B", "F split", "I", "W")}

    def timed(kind: str, call, *args) -> None:
        started = time.perf_counter()
        call(*args)
        times[kind].append(1e3 * (time.perf_counter() - started))

    for mb in range(WARM_UP + repeats):
        timed("F", plain.forward, mb, x, targets if last else None, -1)
        timed("B", plain.backward, mb, grad)
        timed("F split", splitting.forward, mb, x, targets if last else None, -1)
        timed("I", splitting.backward_input, mb, grad)
        timed("W", splitting.backward_weight, mb)
        if mb == WARM_UP - 1:  # the warm-up's times are not kept
            for values in times.values():
                values.clear()
    median = {kind: statistics.median(values) for kind, values in times.items()}
    modules = sum(isinstance(layer, torch.nn.Linear | torch.nn.LayerNorm)
                  for layer in splitting.module.modules())
    return {**median, "modules": modules, "bytes": x.numel() * x.element_size(),
            "F split / F": median["F split"] / median["F"],
            "(I + W) / B": (median["I"] + median["W"]) / median["B"],
            "I / (I + W)": median["I"] / (median["I"] + median["W"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES),
                        help=f"which model sizes, of {','.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=40, help="timed microbatches per stage")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.sizes.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SIZES]
    if unknown or not chosen or args.repeats < 1:
        parser.error(f"--sizes takes some of {','.join(SIZES)} and --repeats at least 1"
                     + (f" (not {', '.join(unknown)})" if unknown else ""))
    import torch

    torch.set_num_threads(1)
    one, five, _ = os.getloadavg()
    print(f"CPU, 1 thread, {args.repeats} microbatches per stage after {WARM_UP} warm-up; "
          f"load average {one:.2f} (1 min), {five:.2f} (5 min)")
    print(f"{'sizes':10} {'stage':12} {'F':>7} {'B':>7} {'I':>7} {'W':>7} "
          f"{'F split/F':>10} {'(I+W)/B':>8} {'I/(I+W)':>8}")
    rows = []
    for name in chosen:
        sizes = SIZES[name]
        for label, stages, index in (("last of 2", 2, 1), ("middle of 4", 4, 1)):
            row = measure(sizes, stages, index, args.repeats)
            rows.append(row)
            print(f"{name:10} {label:12} {row['F']:7.2f} {row['B']:7.2f} {row['I']:7.2f} "
                  f"{row['W']:7.2f} {row['F split / F']:10.3f} {row['(I + W) / B']:8.3f} "
                  f"{row['I / (I + W)']:8.3f}", flush=True)
    per_module(rows)
    return 0


def per_module(rows: list[dict]) -> None:
    """What splitting costs per hooked module, over ``rows``: F's extra, and I + W - B as a
    fixed part and a part per byte of activation (least squares, two or more sizes)."""
    import numpy as np

    hooks = statistics.median((r["F split"] - r["F"]) / r["modules"] for r in rows)
    print(f"per hooked module (Linear or LayerNorm): F + {1e3 * hooks:.1f} us", end="")
    if len({r["bytes"] for r in rows}) < 2:
        print("; I + W - B needs two sizes or more to split into its parts")
        return
    matrix = np.array([[r["modules"], r["modules"] * r["bytes"]] for r in rows], dtype=float)
    extra = np.array([r["I"] + r["W"] - r["B"] for r in rows])
    (fixed, per_byte), *_ = np.linalg.lstsq(matrix, extra, rcond=None)
    print(f"; I + W - B = {1e3 * fixed:.1f} us + {1e6 * per_byte:.3f} ns per byte of the "
          f"microbatch's activation")
    for r, fitted in zip(rows, matrix @ np.array([fixed, per_byte]), strict=True):
        print(f"  {r['modules']:3d} modules, {r['bytes']:>9,} bytes: I + W - B "
              f"{r['I'] + r['W'] - r['B']:6.2f} ms measured, {fitted:6.2f} ms fitted")


if __name__ == "__main__":
    raise SystemExit(main())
