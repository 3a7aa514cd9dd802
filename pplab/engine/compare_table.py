"""The table ``pplab compare`` prints and saves: its columns, their units, text and CSV.

Every column says whether it was measured or comes from a closed form; in the text table the
closed forms are the columns marked ``f.``. ``pplab.comparisons`` reads the saved table back.

    pplab compare 1f1b:pp=2,m=4 tp:tp=2 --steps 3
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

# Columns of the table, with the unit and whether measured or from a closed form.
COLUMNS = (
    ("configuration", ""),
    ("ranks", ""),
    ("step_time_s", "measured, median"),
    ("bubble_fraction", "measured, median"),
    ("bubble_fraction_formula", "closed form"),
    ("allreduce_s_per_step", "measured, mean per rank"),
    ("bytes_per_step", "measured, all ranks"),
    ("bytes_per_step_formula", "closed form"),
    ("peak_activation_mib", "measured, max over ranks"),
    ("final_loss", "measured"),
)
HEADERS = {
    "configuration": "configuration", "ranks": "ranks", "step_time_s": "step ms",
    "bubble_fraction": "bubble", "bubble_fraction_formula": "bubble f.",
    "allreduce_s_per_step": "allreduce ms", "bytes_per_step": "KiB/step",
    "bytes_per_step_formula": "KiB/step f.", "peak_activation_mib": "act MiB",
    "final_loss": "loss",
}


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
    if name == "step_time_s" or name == "allreduce_s_per_step":
        return f"{value * 1e3:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[dict]) -> str:
    """The table as text; ``f.`` columns are closed forms, the others measured."""
    names = [name for name, _ in COLUMNS]
    cells = [[HEADERS[n] for n in names]] + [[_cell(n, row[n]) for n in names] for row in rows]
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
    if final:
        legend += f"; steps {final[0]}..{final[-1]} (step 0 is warm-up)"
    return "\n".join(lines + ["", legend])
