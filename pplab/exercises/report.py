"""``pplab exercise report DIR``: a folder of learners' submissions turned into a grade table.

One file per learner and kind, named as the learner likes:

* ``NAME.json``: answers, as ``pplab exercise submit`` writes them or by hand,
  ``{"learner": "ada", "answers": {"bubble": {"a": "27", "b": "fewer-stages", "c": "..."}},
  "tries": {"bubble": {"a": 2, "b": 1, "c": 4}}}`` (a list in part order works too; tries
  are optional); the ``learner`` field names whose numbers they are;
* ``NAME.py``: a coding lab's file (the lab it answers is the one whose functions it
  defines: ``gpipe``... for ``schedule-lab``, ``blocking_step``... for ``runtime-lab``); its
  ``LEARNER = "..."`` line (read, never run here) names the learner, else the file name does.

Every answer is judged against that learner's numbers by the same judges as ``check``, with no
hints; a schedule file runs in the guard's child process as ``check --file`` does (a file
that imports pplab gets no points). The table has a row per learner: points per exercise,
the total, the tries the judged parts took, and notes (a file that could not be read, an
exercise not handed in). ``--max-tries N`` gives no point to a part answered right after
more than N tries; ``--attempts FILE`` reads the tries from a lab server's attempts file
instead of the ones handed in. ``--out grades.json`` adds every part's verdict, message and
tries.

    pplab exercise report submissions/ --out grades.csv
    pplab exercise report submissions/ --max-tries 5 --attempts server-attempts.json
"""

from __future__ import annotations

import ast
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from pplab.exercises.attempts import AttemptBook
from pplab.exercises.checking import PLACEHOLDER_LEARNER, Verdict, judge_part, label_answers
from pplab.exercises.coding_lab import CodingLab
from pplab.exercises.core import EXERCISES, BadAnswer, Exercise, get_exercise, learner_key
from pplab.limits import MAX_SUBMISSION_BYTES, MAX_SUBMISSION_FILES


@dataclass
class Row:
    """One learner's grades: (points, out of) and the verdicts per exercise, and notes."""

    learner: str
    answers: dict[str, object] = field(default_factory=dict)  # exercise id -> answers
    tries: dict[str, dict[str, int]] = field(default_factory=dict)  # exercise -> part -> n
    lab_files: dict[str, Path] = field(default_factory=dict)  # coding lab id -> its file
    scores: dict[str, tuple[int, int]] = field(default_factory=dict)
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(points for points, _ in self.scores.values())

    @property
    def out_of(self) -> int:
        return sum(out_of for _, out_of in self.scores.values())

    def tries_of(self, exercise_id: str, part: str) -> int | None:
        value = self.tries.get(exercise_id, {}).get(part)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def total_tries(self, ids: list[str]) -> int | None:
        """The tries of every part judged here, or None where none was handed in."""
        counts = [self.tries_of(i, v.part) for i in ids for v in self.verdicts.get(i, [])]
        known = [n for n in counts if n is not None]
        return sum(known) if known else None


def _tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return None


def lab_of_file(path: Path) -> str:
    """The coding lab a file answers: the one whose skeleton's functions it defines most of
    (read from its syntax tree, never run); the schedule lab when it defines none."""
    tree = _tree(path)
    defined = {node.name for node in (tree.body if tree else [])
               if isinstance(node, ast.FunctionDef)}
    labs = [e for e in EXERCISES.values() if isinstance(e, CodingLab)]
    best = max(labs, key=lambda lab: len(defined & set(lab.functions)))
    return best.id if defined & set(best.functions) else "schedule-lab"


def declared_learner(path: Path) -> str | None:
    """The ``LEARNER = "..."`` of a lab file, read from its syntax tree, never run."""
    tree = _tree(path)
    for node in (tree.body if tree else []):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "LEARNER"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            name = node.value.value
            return None if name.strip().casefold() == PLACEHOLDER_LEARNER else name
    return None


def read_answers_file(path: Path) -> tuple[str, dict, dict]:
    """(learner, {exercise id: answers}, {exercise id: {part: tries}}) of a submission;
    ValueError saying what is wrong."""
    if path.stat().st_size > MAX_SUBMISSION_BYTES:
        raise ValueError(f"over {MAX_SUBMISSION_BYTES // 1024} KiB")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("answers"), dict):
        raise ValueError('expected {"learner": NAME, "answers": {EXERCISE: {PART: ANSWER}}}')
    tries = data.get("tries")
    return (str(data.get("learner") or path.stem), data["answers"],
            tries if isinstance(tries, dict) else {})


def collect(folder: Path) -> tuple[dict[str, Row], list[str]]:
    """Every learner's submissions in ``folder``, and notes on files that were not read."""
    rows: dict[str, Row] = {}
    skipped: list[str] = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(files) > MAX_SUBMISSION_FILES:
        raise BadAnswer(f"{folder} holds {len(files)} files; a report reads at most "
                        f"{MAX_SUBMISSION_FILES}")

    def row_of(name: str, path: Path) -> Row | None:
        try:
            key = learner_key(name)
        except BadAnswer as error:
            skipped.append(f"{path.name}: {error}")
            return None
        return rows.setdefault(key, Row(key))

    for path in files:
        if path.suffix == ".json":
            try:
                learner, answers, tries = read_answers_file(path)
            except (ValueError, OSError) as error:
                row = row_of(path.stem, path)
                if row is not None:
                    row.notes.append(f"{path.name} cannot be read: {error}")
                continue
            row = row_of(learner, path)
            if row is not None:
                for exercise_id, given in answers.items():
                    if exercise_id in row.answers:
                        row.notes.append(f"{exercise_id} handed in twice; {path.name} counts")
                    row.answers[exercise_id] = given
                    if isinstance(tries.get(exercise_id), dict):
                        row.tries[exercise_id] = tries[exercise_id]
        elif path.suffix == ".py":
            row = row_of(declared_learner(path) or path.stem, path)
            if row is not None:
                lab = lab_of_file(path)
                if lab in row.lab_files:
                    row.notes.append(f"two {lab} files; {path.name} counts")
                row.lab_files[lab] = path
        else:
            skipped.append(f"{path.name}: not a .json answers file nor a .py schedule file")
    return rows, skipped


def _over_cap(row: Row, exercise_id: str, verdict: Verdict, cap: int | None) -> Verdict:
    tries = row.tries_of(exercise_id, verdict.part)
    if cap is None or not verdict.right or tries is None or tries <= cap:
        return verdict
    return Verdict(verdict.part, False, f"right, but after {tries} tries, over this course's "
                                        f"cap of {cap}: no point")


def _grade_questions(row: Row, exercise: Exercise, course: str | None,
                     cap: int | None = None) -> None:
    given = row.answers.get(exercise.id)
    verdicts = []
    if given is None:
        row.notes.append(f"{exercise.id}: no answers")
    else:
        try:
            labelled = label_answers(exercise, given)
        except BadAnswer as error:
            row.notes.append(f"{exercise.id}: {error}")
            labelled = {}
        variant = exercise.variant(row.learner, course)
        for key in exercise.part_keys:
            if key not in labelled:
                verdicts.append(Verdict(key, False, "not answered", answered=False))
                continue
            try:
                verdicts.append(_over_cap(row, exercise.id, judge_part(
                    exercise, variant, key, labelled[key], book=None), cap))
            except BadAnswer as error:
                verdicts.append(Verdict(key, False, f"cannot read it: {error}"))
    row.verdicts[exercise.id] = verdicts
    row.scores[exercise.id] = (sum(v.right for v in verdicts), len(exercise.parts))


def _grade_lab(row: Row, lab: CodingLab, course: str | None) -> None:
    if lab.id not in row.lab_files:
        row.notes.append(f"{lab.id}: no {lab.skeleton} file")
        row.verdicts[lab.id] = []
        row.scores[lab.id] = (0, len(lab.part_keys))
        return
    try:
        result = lab.check_file(row.lab_files[lab.id], row.learner, course)
    except BadAnswer as error:
        row.notes.append(f"{lab.id}: {error}")
        row.verdicts[lab.id], row.scores[lab.id] = [], (0, len(lab.part_keys))
        return
    if result.refused:  # the guard refused what the file did: said in the row, no points
        row.notes.append(f"{lab.id}: {result.refused}")
    row.verdicts[lab.id] = result.verdicts
    row.scores[lab.id] = (result.points, len(lab.part_keys))


def grade_folder(folder: str | Path, exercise_ids: list[str] | None = None,
                 course: str | None = None, max_tries: int | None = None,
                 attempts: str | Path | None = None) -> tuple[list[Row], list[str], list[str]]:
    """(rows sorted by learner, the exercises graded, notes on files skipped). With
    ``attempts`` (a lab server's attempts file) the tries are read there, not from the
    learners' files; with ``max_tries`` a part right after more tries gets no point."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadAnswer(f"{folder} is not a folder of submissions")
    ids = list(exercise_ids or EXERCISES)
    exercises = [get_exercise(i) for i in ids]
    rows, skipped = collect(folder)
    book = AttemptBook(attempts) if attempts is not None else None
    for row in rows.values():
        if book is not None:
            row.tries = book.tries(row.learner)
        strangers = sorted(set(row.answers) - set(ids))
        if strangers:
            row.notes.append(f"answers to {', '.join(strangers)} not graded here")
        for exercise in exercises:
            if isinstance(exercise, CodingLab):
                _grade_lab(row, exercise, course)
            else:
                _grade_questions(row, exercise, course, max_tries)
    return [rows[key] for key in sorted(rows)], ids, skipped


def csv_table(rows: list[Row], ids: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["learner", *ids, "total", "out_of", "tries", "notes"])
    for row in rows:
        tries = row.total_tries(ids)
        writer.writerow([row.learner, *(row.scores[i][0] for i in ids), row.total, row.out_of,
                         "" if tries is None else tries, "; ".join(row.notes)])
    return buffer.getvalue()


def json_table(rows: list[Row], ids: list[str], skipped: list[str]) -> str:
    out_of = {i: rows[0].scores[i][1] for i in ids} if rows else {}
    learners = [{
        "learner": row.learner, "total": row.total, "out_of": row.out_of,
        "tries": row.total_tries(ids), "notes": row.notes,
        "scores": {i: {"points": row.scores[i][0], "out_of": row.scores[i][1],
                       "parts": [{"part": v.part, "right": v.right, "message": v.message,
                                  "tries": row.tries_of(i, v.part)}
                                 for v in row.verdicts[i]]} for i in ids},
    } for row in rows]
    return json.dumps({"exercises": out_of, "learners": learners, "skipped": skipped},
                      indent=1) + "\n"
