"""Reading a comparison folder: the one reader of comparison.json.

``pplab compare`` trains one model under several parallel configurations and writes a folder
holding one run directory per configuration, ``comparison.json`` (a description, what each
column means, one row per configuration) and ``comparison.csv``. The CLI, the app and the
tests read it back through ``load_comparison``; nothing else parses the file.

    python -c "from pplab.runs.comparisons import load_comparison; \
print(load_comparison('data/comparisons/pp4-vs-tp4-cpu').table())"
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

COMPARISON_JSON = "comparison.json"
COMPARISON_CSV = "comparison.csv"


@dataclass(frozen=True)
class Comparison:
    """What a comparison folder holds: its words, its columns and its rows."""

    path: Path
    description: str
    columns: dict[str, str]  # column -> what it is, e.g. "measured, median" or "closed form"
    rows: tuple[dict, ...]
    document: dict = field(repr=False)  # the whole file: created, shared settings, ...

    def table(self) -> pd.DataFrame:
        """The rows as a table, only the columns ``columns`` names and in that order (all
        columns when it names none)."""
        table = pd.DataFrame(list(self.rows))
        named = [name for name in self.columns if name in table.columns]
        return table[named] if named else table

    def run_dirs(self) -> list[Path]:
        """The run directory of each row that names one (``run``), in row order."""
        return [self.path / str(row["run"]) for row in self.rows if row.get("run")]


def is_comparison(directory: str | os.PathLike) -> bool:
    return (Path(directory) / COMPARISON_JSON).is_file()


def load_comparison(directory: str | os.PathLike) -> Comparison:
    """Read ``directory/comparison.json``; raise ValueError with a one-line reason if it is
    not a comparison."""
    path = Path(directory) / COMPARISON_JSON
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a comparison: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path} holds a {type(document).__name__}, not a JSON object")
    rows = document.get("rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path} has no list of rows")
    columns = document.get("columns")
    columns = {str(k): str(v) for k, v in columns.items()} if isinstance(columns, dict) else {}
    return Comparison(Path(directory), str(document.get("description") or ""), columns,
                      tuple(rows), document)


def find_comparisons(root: str | os.PathLike) -> list[Path]:
    """Comparison folders directly under ``root`` (hidden ones, e.g. one being written, skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [path for path in sorted(root.iterdir())
            if path.is_dir() and not path.name.startswith(".") and is_comparison(path)]
