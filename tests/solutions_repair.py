"""Reference answers of exercise ``repair`` (lesson 4), worked out from the schedule shown.

Written from the lesson's rules, not from the judge: (a) a backward before its own forward
is a broken dependency on one rank, an action absent from the rows is missing, and a first
backward that comes before the forwards the next rank still needs is a deadlock; (b) the
family's own order of the broken rank, rebuilt from the lesson's recipe (GPipe: forwards then
backwards; 1F1B: p - 1 - r warm-up forwards, then F and B in turn; ZB-H1: I for B, W held back
while r of them are pending); (c) a walk that runs every action whose inputs are there.
"""

from __future__ import annotations

import re


def family_row(family: str, p: int, m: int, r: int) -> list[str]:
    if family == "gpipe":
        return [f"{r}F{j}" for j in range(m)] + [f"{r}B{j}" for j in range(m)]
    warmup = min(p - 1 - r, m)
    row = [f"{r}F{j}" for j in range(warmup)]
    pending: list[int] = []
    for j in range(m):
        if warmup + j < m:
            row.append(f"{r}F{warmup + j}")
        if family == "1f1b":
            row.append(f"{r}B{j}")
            continue
        row.append(f"{r}I{j}")
        pending.append(j)
        if len(pending) > r:
            row.append(f"{r}W{pending.pop(0)}")
    return row + [f"{r}W{j}" for j in pending]


def shown_rows(n: dict) -> list[list[str]]:
    """The broken schedule as the question prints it."""
    return [line.split(":", 1)[1].split() for line in n["schedule_text"].splitlines()]


def _parse(cell: str) -> tuple[int, str, int]:
    stage, kind, mb = re.fullmatch(r"(\d+)([FBIW])(\d+)", cell).groups()
    return int(stage), kind, int(mb)


def walk(rows: list[list[str]], p: int) -> int:
    """Actions that run before every rank left waits (each as soon as its inputs are there)."""
    done: set[tuple[int, str, int]] = set()
    position = [0] * len(rows)

    def ready(cell: str) -> bool:
        s, kind, j = _parse(cell)
        if kind == "F":
            return s == 0 or (s - 1, "I", j) in done or (s - 1, "F", j) in done
        if kind == "W":
            return (s, "I", j) in done
        return (s, "F", j) in done and (s == p - 1 or (s + 1, "I", j) in done)

    moved = True
    while moved:
        moved = False
        for r, row in enumerate(rows):
            while position[r] < len(row) and ready(row[position[r]]):
                s, kind, j = _parse(row[position[r]])
                done.add((s, kind, j))
                if kind == "B":
                    done.add((s, "I", j))
                position[r] += 1
                moved = True
    return sum(position)


def why(n: dict) -> str:
    rows, r = shown_rows(n), n["rank"]
    row, right = rows[r], family_row(n["family"], n["p"], n["m"], r)
    if sorted(row) != sorted(right):
        return "missing"
    seen: set[tuple[str, int]] = set()
    for cell in row:
        _, kind, j = _parse(cell)
        if kind in "BI" and ("F", j) not in seen or kind == "W" and ("I", j) not in seen:
            return "own-order"
        seen.add((kind, j))
    return "deadlock"


def right_answers(n: dict) -> dict[str, str]:
    return {"a": why(n), "b": " ".join(family_row(n["family"], n["p"], n["m"], n["rank"])),
            "c": str(walk(shown_rows(n), n["p"]))}


def mistakes(n: dict) -> dict[str, list]:
    rows = shown_rows(n)
    total, truth = sum(len(row) for row in rows), walk(rows, n["p"])
    return {"a": [], "b": [" ".join(rows[n["rank"]])],
            "c": [total, truth + 1, len(rows[n["rank"]]), truth - 1]}
