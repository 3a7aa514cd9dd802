"""``pplab plan``: the 3D-parallelism planner on the command line.

What it teaches: which pp x tp x dp, microbatch size, schedule and recomputation train a real
model fastest on a real cluster, and why the others rank below. The model and the cluster come
from presets or from a small TOML or JSON file (``pplab.planner.load_spec``); the planner
(``pplab.planner.plan``) ranks the layouts that fit, and ``--explain`` says for every other
grid of the same GPU count why it ranks above or below the best (or ``--reference``'s). Every
number is predicted: memory from Korthikanti et al.'s formulas, time from the simulator over
a FLOP and bandwidth cost model (docs/planner.md). The table's rows (``ranked_rows``) are the
ones the app's Planner page shows.

    pplab plan --model gpt3-175b --cluster dgx-a100-80gb --nodes 512 --global-batch 1536
    pplab plan --spec my-plan.toml --schedules 1f1b,zb-h1 --top 5 --explain
    python -m pplab plan --model gpt3-175b --nodes 512 --global-batch 1536 --json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from pplab.cli.common import whole_number
from pplab.limits import MAX_PLAN_TOP

DEFAULT_TOP = 10
# How a link is written in the table: one short word per kind, the legend printed below it.
LINK_WORDS = {"NVLink": "nvl", "inter-node": "net", "none": "-"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plan", help="rank pp x tp x dp layouts of a real model on a real cluster (predicted)",
        description="Enumerate pp x tp x dp, microbatch size, schedule and recomputation for "
                    "a model on a cluster; rank the layouts that fit by predicted step time.")
    what = parser.add_argument_group("model, cluster and batch (presets or a spec file)")
    what.add_argument("--model", metavar="NAME", help="a preset model, e.g. gpt3-175b")
    what.add_argument("--cluster", metavar="NAME",
                      help="a preset node, e.g. dgx-a100-80gb (default when no spec gives one)")
    what.add_argument("--nodes", type=whole_number, metavar="N",
                      help="nodes of the cluster (default: the spec's, or 1)")
    what.add_argument("--memory-gib", type=float, metavar="GIB",
                      help="memory per GPU in GiB instead of the cluster's (leave room for "
                           "what the planner does not count)")
    what.add_argument("--global-batch", type=whole_number, metavar="B",
                      help="sequences per training step")
    what.add_argument("--spec", type=Path, metavar="FILE",
                      help="a .toml or .json file with [model], [cluster] and global_batch")
    grid = parser.add_argument_group("restrict the search (comma-separated lists)")
    grid.add_argument("--schedules", metavar="LIST",
                      help="of gpipe, 1f1b, interleaved-1f1b, zb-h1 (default all)")
    grid.add_argument("--recompute", metavar="LIST",
                      help="of none, selective, full (default all; the lightest that fits)")
    grid.add_argument("--pp", metavar="LIST", help="pipeline depths to try, e.g. 8,16")
    grid.add_argument("--tp", metavar="LIST", help="tensor-parallel sizes to try, e.g. 4,8")
    grid.add_argument("--microbatch-sizes", metavar="LIST", help="default 1,2,4,8")
    grid.add_argument("--chunks", metavar="LIST",
                      help="interleaving depths v for interleaved-1f1b (default 2 to 8)")
    grid.add_argument("--no-sequence-parallel", action="store_true",
                      help="keep tensor-parallel activations replicated along the sequence")
    out = parser.add_argument_group("output")
    out.add_argument("--top", type=whole_number, default=DEFAULT_TOP, metavar="N",
                     help=f"layouts in the ranked table (default {DEFAULT_TOP})")
    out.add_argument("--explain", action="store_true",
                     help="say why each other (pp, tp, dp) ranks above or below the reference")
    out.add_argument("--reference", metavar="PPxTPxDP",
                     help="explain against this grid's fastest layout (default: the best)")
    out.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run)
    return parser


def _names(flag: str, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"{flag} needs at least one value, got {text!r}")
    return names


def _numbers(flag: str, text: str | None) -> tuple[int, ...] | None:
    names = _names(flag, text)
    if names is None:
        return None
    try:
        return tuple(int(name) for name in names)
    except ValueError:
        raise ValueError(f"{flag} takes whole numbers joined by commas, got {text!r}") from None


def reference_grid(text: str) -> tuple[int, int, int]:
    """``8x8x64`` (or ``8,8,64``) as (pp, tp, dp)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        pp, tp, dp = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"--reference takes PPxTPxDP, e.g. 8x8x64; got {text!r}") from None
    return pp, tp, dp


def specs_from_args(args: argparse.Namespace):
    """(model, cluster, global batch) from the presets, the spec file and the flags.

    A part given twice (a flag and the spec) is refused rather than silently overridden;
    ``--nodes`` and ``--memory-gib`` change whichever cluster was chosen.
    """
    from dataclasses import replace

    from pplab.planner import PRESET_MODELS, PlanSpec, cluster_preset, load_spec, model_preset

    spec = load_spec(args.spec) if args.spec is not None else PlanSpec()
    for flag, given, in_spec in (("--model", args.model, spec.model),
                                 ("--cluster", args.cluster, spec.cluster),
                                 ("--global-batch", args.global_batch, spec.global_batch)):
        if given is not None and in_spec is not None:
            raise ValueError(f"{flag} and {args.spec} both say it; give it once")
    model = model_preset(args.model) if args.model is not None else spec.model
    if model is None:
        raise ValueError(f"no model: give --model NAME ({', '.join(PRESET_MODELS)}) or "
                         f"--spec FILE")
    cluster = cluster_preset(args.cluster) if args.cluster is not None else spec.cluster
    cluster = cluster if cluster is not None else cluster_preset("dgx-a100-80gb")
    if args.nodes is not None:
        cluster = cluster.with_nodes(args.nodes)
    if args.memory_gib is not None:
        cluster = replace(cluster, memory_gib=args.memory_gib)
    batch = args.global_batch if args.global_batch is not None else spec.global_batch
    if batch is None:
        raise ValueError("no global batch: give --global-batch B or global_batch in the spec")
    return model, cluster, batch


def plan_options(args: argparse.Namespace) -> dict[str, object]:
    """The keyword arguments of ``planner.plan`` the flags restrict (absent: its defaults)."""
    options = {
        "schedules": _names("--schedules", args.schedules),
        "recompute": _names("--recompute", args.recompute),
        "pp_sizes": _numbers("--pp", args.pp),
        "tp_sizes": _numbers("--tp", args.tp),
        "microbatch_sizes": _numbers("--microbatch-sizes", args.microbatch_sizes),
        "chunks": _numbers("--chunks", args.chunks),
    }
    options = {key: value for key, value in options.items() if value is not None}
    options["sequence_parallel"] = not args.no_sequence_parallel
    return options


def ranked_rows(candidates: Sequence) -> list[dict[str, object]]:
    """One row per timed candidate, named with units: the CLI's table and the app's alike.

    Memory is the peak rank's, by part; bytes are what one GPU sends per step on each kind of
    link. All numbers are predicted.
    """
    from pplab.planner.specs import GB, GIB

    rows = []
    for place, candidate in enumerate(candidates, start=1):
        layout, traffic, time = candidate.layout, candidate.traffic, candidate.time
        peak = candidate.memory[candidate.peak_rank]
        rows.append({
            "#": place, "pp": layout.pp, "tp": layout.tp, "dp": layout.dp,
            "schedule": layout.schedule, "v": layout.num_chunks, "b": layout.microbatch_size,
            "m": layout.num_microbatches, "recompute": layout.recompute,
            "weights (GiB)": peak.weights / GIB, "grads (GiB)": peak.gradients / GIB,
            "optimizer (GiB)": peak.optimizer / GIB, "activations (GiB)": peak.activations / GIB,
            "memory (GiB)": candidate.peak_memory / GIB, "peak rank": candidate.peak_rank,
            "bubble (%)": _percent(candidate.bubble_fraction),
            "step (s)": None if time is None else time.step, "MFU (%)": _percent(candidate.mfu),
            "tp (GB/step)": traffic.tp_bytes / GB, "tp link": traffic.tp_link,
            "pp (GB/step)": traffic.pp_bytes / GB, "pp link": traffic.pp_link,
            "dp (GB/step)": traffic.dp_bytes / GB, "dp link": traffic.dp_link,
        })
    return rows


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


# (header, width, how the row's value is written): text columns are left-aligned, numbers
# right-aligned.
_TEXT_COLUMNS = ("schedule", "recompute")
_COLUMNS = (
    ("#", 3, lambda r: f"{r['#']}"), ("pp", 4, lambda r: f"{r['pp']}"),
    ("tp", 3, lambda r: f"{r['tp']}"), ("dp", 5, lambda r: f"{r['dp']}"),
    ("schedule", 16, lambda r: f"{r['schedule']}"), ("v", 2, lambda r: f"{r['v']}"),
    ("b", 2, lambda r: f"{r['b']}"), ("m", 5, lambda r: f"{r['m']}"),
    ("recompute", 9, lambda r: f"{r['recompute']}"),
    ("wts", 5, lambda r: f"{r['weights (GiB)']:.1f}"),
    ("grad", 5, lambda r: f"{r['grads (GiB)']:.1f}"),
    ("optim", 5, lambda r: f"{r['optimizer (GiB)']:.1f}"),
    ("activ", 5, lambda r: f"{r['activations (GiB)']:.1f}"),
    ("total", 5, lambda r: f"{r['memory (GiB)']:.1f}"),
    ("bubble", 6, lambda r: f"{r['bubble (%)']:.1f}%"),
    ("step s", 6, lambda r: f"{r['step (s)']:.2f}"),
    ("MFU", 5, lambda r: f"{r['MFU (%)']:.1f}%"),
    ("tp GB", 9, lambda r: _traffic(r, "tp")), ("pp GB", 8, lambda r: _traffic(r, "pp")),
    ("dp GB", 8, lambda r: _traffic(r, "dp")),
)


def _traffic(row: dict, kind: str) -> str:
    return f"{row[f'{kind} (GB/step)']:.1f} {LINK_WORDS.get(row[f'{kind} link'], '?')}"


def _cells(texts: Sequence[str]) -> str:
    return "  ".join(text.ljust(width) if name in _TEXT_COLUMNS else text.rjust(width)
                     for text, (name, width, _) in zip(texts, _COLUMNS, strict=True))


def table_text(rows: list[dict[str, object]]) -> str:
    """The ranked rows as a fixed-width table with a legend of its units."""
    lines = [_cells([name for name, _, _ in _COLUMNS])]
    lines += [_cells([write(row) for _, _, write in _COLUMNS]) for row in rows]
    lines.append("memory: GiB per GPU on its fullest pipeline rank (weights, gradients, "
                 "optimizer states, activations); step: seconds; tp/pp/dp GB: bytes one GPU "
                 "sends per step, and on which link (nvl NVLink, net between nodes). "
                 "All predicted.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pplab.planner import explain, plan

    model, cluster, batch = specs_from_args(args)
    if not 1 <= args.top <= MAX_PLAN_TOP:
        raise ValueError(f"--top must be between 1 and {MAX_PLAN_TOP}, got {args.top}")
    reference_of = reference_grid(args.reference) if args.reference is not None else None
    result = plan(model, cluster, batch, max_candidates=args.top, **plan_options(args))
    reference = result.best
    if reference_of is not None:
        reference = result.best_for(reference_of)
        if reference is None:
            raise ValueError(_no_reference(result, reference_of))
    comparisons = explain(reference, result) if args.explain else []
    if args.json:
        out = result.as_dict(limit=args.top)
        out["reference"] = reference.as_dict()
        if args.explain:
            out["explain"] = [comparison.as_dict() for comparison in comparisons]
        print(json.dumps(out, sort_keys=True, allow_nan=False))
        return 0
    print(model.describe())
    print(cluster.describe())
    print(f"global batch {batch} sequences of {model.seq_len} tokens; {len(result.feasible)} "
          f"layouts fit in {cluster.memory_gib:g} GiB, {result.timed} simulated; the fastest "
          f"{len(result.ranked)} (predicted):")
    print(table_text(ranked_rows(result.ranked)))
    print(f"best       {result.best.describe()}")
    if reference is not result.best:
        print(f"reference  {reference.describe()}")
    if comparisons:
        print(f"why each (pp, tp, dp) of {cluster.num_gpus} GPUs ranks where it does, against "
              f"pp={reference.layout.pp} tp={reference.layout.tp} dp={reference.layout.dp} "
              f"(predicted):")
        for line in explain_lines(comparisons):
            print(f"  {line}")
    return 0


def explain_lines(comparisons: Sequence) -> list[str]:
    """One line per grid that runs or does not fit; the grids that break a rule grouped by
    rule (a cluster of thousands of GPUs has dozens of them, most for the same reason)."""
    from pplab.planner.explain import EXCLUDED

    lines = [c.describe() for c in comparisons if c.verdict != EXCLUDED]
    by_rule: dict[str, list[str]] = {}
    for c in comparisons:
        if c.verdict == EXCLUDED:
            by_rule.setdefault(c.reason, []).append(f"{c.pp}x{c.tp}x{c.dp}")
    lines += [f"{EXCLUDED}: {rule}: pp x tp x dp = {', '.join(grids)}"
              for rule, grids in by_rule.items()]
    return lines


def _no_reference(result, grid: tuple[int, int, int]) -> str:
    from pplab.planner.specs import GIB

    pp, tp, dp = grid
    rules = {e.grid: e.reason for e in result.excluded}
    if grid in rules:
        return f"--reference {pp}x{tp}x{dp} cannot run: {rules[grid]}"
    smallest = result.smallest_for(grid)
    if smallest is None:
        return (f"--reference {pp}x{tp}x{dp} is not a grid of the cluster's "
                f"{result.cluster.num_gpus} GPUs under these options")
    return (f"--reference {pp}x{tp}x{dp} does not fit: it needs "
            f"{smallest.peak_memory / GIB:.1f} GiB > {result.cluster.memory_gib:g} GiB")
