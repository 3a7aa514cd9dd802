"""The table ``pplab compare`` prints and saves: its columns, their units, text and CSV.

Every column says whether it was measured or comes from a closed form; in the text table the
closed forms are the columns marked ``f.``. ``pplab.runs.comparisons`` reads the saved table back.

Tensor parallelism blocks in its all-reduces *inside* F and B, so its busy time hides
communication that a pipeline would show as bubble. Three columns split it out
(``split_columns``): the tp all-reduce seconds per rank and step, and the shares of rank-time
(over ranks x step time, the bubble's normalisation) spent in them and in compute (F, B, I, W
minus those all-reduces); bubble + tp all-reduce + compute + optimizer = 1. A comparison
written before these columns existed gets them from its run directories
(``fill_split_columns``).

    pplab compare 1f1b:pp=2,m=4 tp:tp=2 --steps 3
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

SPLIT_COLUMNS = ("tp_allreduce_s_per_step", "tp_allreduce_fraction", "compute_fraction")
# Columns of the table, with the unit and whether measured or from a closed form.
COLUMNS = (
    ("configuration", ""),
    ("ranks", ""),
    ("step_time_s", "measured, median"),
    ("bubble_fraction", "measured, median"),
    ("bubble_fraction_formula", "closed form"),
    ("allreduce_s_per_step", "measured, mean per rank"),
    ("tp_allreduce_s_per_step", "measured, mean per rank: tp all-reduces inside F and B"),
    ("tp_allreduce_fraction", "measured, median: tp all-reduce time inside F and B / "
                              "(ranks x step time)"),
    ("compute_fraction", "measured, median: (F+B+I+W minus tp all-reduces) / "
                         "(ranks x step time)"),
    ("bytes_per_step", "measured, all ranks"),
    ("bytes_per_step_formula", "closed form"),
    ("peak_activation_mib", "measured, max over ranks"),
    ("final_loss", "measured"),
)
HEADERS = {
    "configuration": "configuration", "ranks": "ranks", "step_time_s": "step ms",
    "bubble_fraction": "bubble", "bubble_fraction_formula": "bubble f.",
    "allreduce_s_per_step": "allreduce ms", "tp_allreduce_s_per_step": "tp-AR ms",
    "tp_allreduce_fraction": "tp-AR", "compute_fraction": "compute", "bytes_per_step": "KiB/step",
    "bytes_per_step_formula": "KiB/step f.", "peak_activation_mib": "act MiB",
    "final_loss": "loss",
}


# How a page shows a saved comparison: a short name with its unit, the factor from the saved
# value, the digits kept. The column's full meaning (COLUMNS) goes in its tooltip.
DISPLAY = {
    "configuration": ("configuration", None, None), "ranks": ("ranks", None, None),
    "step_time_s": ("step time (ms)", 1e3, 1), "bubble_fraction": ("bubble (%)", 100, 2),
    "bubble_fraction_formula": ("bubble, formula (%)", 100, 2),
    "allreduce_s_per_step": ("all-reduce (ms)", 1e3, 2),
    "tp_allreduce_s_per_step": ("tp all-reduce (ms)", 1e3, 2),
    "tp_allreduce_fraction": ("tp all-reduce (%)", 100, 2),
    "compute_fraction": ("compute (%)", 100, 2),
    "bytes_per_step": ("sent (KiB/step)", 2**-10, 0),
    "bytes_per_step_formula": ("sent, formula (KiB/step)", 2**-10, 0),
    "peak_activation_mib": ("activations (MiB)", 1, 1), "final_loss": ("final loss", 1, 4),
}
# The few that fit a laptop's page beside each other; the others wait in an expander.
MAIN_COLUMNS = ("configuration", "step_time_s", "bubble_fraction", "bubble_fraction_formula",
                "compute_fraction", "tp_allreduce_fraction", "final_loss")


def display_table(rows: Sequence[dict], notes: dict[str, str] | None = None,
                  columns: Sequence[str] | None = None) -> tuple[list[dict], dict[str, str]]:
    """``rows`` as a page shows them, and each shown column's tooltip. Columns come in
    COLUMNS' order: those ``notes`` names (all when it names none; the split of busy time is
    shown even where an older comparison's notes lack it), only ``columns`` when given, each
    under a short name with its unit, scaled and rounded; the tooltip gives the saved name
    and what the column is."""
    meaning = dict(COLUMNS) | {name: note for name, note in (notes or {}).items() if note}
    names = [name for name, _ in COLUMNS if name in DISPLAY
             and (not notes or name in notes or name in SPLIT_COLUMNS)
             and (columns is None or name in columns) and any(name in row for row in rows)]
    shown = []
    for row in rows:
        cells = {}
        for name in names:
            label, factor, digits = DISPLAY[name]
            value = row.get(name)
            if factor is not None and isinstance(value, int | float) and math.isfinite(value):
                value = round(value * factor, digits) if digits else round(value * factor)
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            cells[label] = value
        shown.append(cells)
    tips = {DISPLAY[name][0]: f"{name}: {meaning[name]}" if meaning.get(name) else name
            for name in names}
    return shown, tips


def _flat(row: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in row.items()}


def table_csv(rows: Sequence[dict]) -> str:
    """Every field of every row, nested ones as JSON text: the comparison.csv file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(_flat(row) for row in rows)
    return buffer.getvalue()


def _cell(name: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if "bytes" in name:
        return f"{value / 2**10:,.0f}"
    if name.endswith("_s_per_step") or name == "step_time_s":
        return f"{value * 1e3:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[dict]) -> str:
    """The table as text; ``f.`` columns are closed forms, the others measured."""
    # A column no row has (the split columns of an older comparison) is left out.
    names = [name for name, _ in COLUMNS if any(name in row for row in rows)]
    cells = [[HEADERS[n] for n in names]] + [[_cell(n, row.get(n)) for n in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        for line in cells
    ]
    final = rows[0]["steps_measured"] if rows else []
    legend = ("measured: step ms (median), bubble (median idle share), allreduce ms (per rank), "
              "KiB/step (sends + all-reduces, all ranks), act MiB (peak saved activations, "
              "busiest rank), loss (last step); f. = closed form")
    if "compute_fraction" in names:
        legend += ("; tp-AR ms, tp-AR, compute: tp all-reduce time inside F and B per rank, its "
                   "share and the compute share of ranks x step time (median)")
    if final:
        legend += f"; steps {final[0]}..{final[-1]} (step 0 is warm-up)"
    return "\n".join(lines + ["", legend])


def split_columns(events, ranks: Sequence[int], kept: Sequence[int], whole_run: bool) -> dict:
    """The split of busy time over the measured steps ``kept``: tp all-reduce seconds per
    rank and step (mean), and the medians over steps of the tp all-reduce and compute shares.

    ``whole_run`` (an asynchronous schedule, whose steps overlap) takes the shares of all kept
    steps at once, as the bubble column does.
    """
    from pplab.timeline import metrics

    kept_events = events[events["step"].isin(list(kept))]
    if not len(kept_events):
        return dict.fromkeys(SPLIT_COLUMNS, float("nan"))
    result = metrics(kept_events, ranks)
    steps = [result] if whole_run or "per_step" not in result else result["per_step"]
    return {
        "tp_allreduce_s_per_step": float(result["tp_allreduce_time"]) / max(len(kept), 1),
        "tp_allreduce_fraction": statistics.median(s["tp_allreduce_fraction"] for s in steps),
        "compute_fraction": statistics.median(s["compute_fraction"] for s in steps),
    }


def fill_split_columns(folder, rows: Sequence[dict]) -> list[dict]:
    """``rows`` of the comparison in ``folder``, each with the split columns: as saved, or
    worked out from the row's run directory when the comparison predates them. A row whose
    run is missing or unreadable is left as it is."""
    from pplab.runs.run_dirs import RunError, load_run
    from pplab.runs.summary import summarize

    filled = []
    for row in rows:
        row = dict(row)
        if row.get("run") and not all(name in row for name in SPLIT_COLUMNS):
            try:
                run = load_run(Path(folder) / str(row["run"]))
            except (RunError, OSError, ValueError):
                filled.append(row)
                continue
            summary = summarize(run)
            kept = row.get("steps_measured") or list(summary.steps)
            try:
                row.update(split_columns(run.events, summary.ranks_of(run.events), kept,
                                         summary.is_async))
            except (ValueError, TypeError):
                pass  # a foreign folder's rows stay as they are
        filled.append(row)
    return filled
