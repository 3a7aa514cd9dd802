"""How often each learner tried each part, so numeric hints run out.

A wrong answer always gets a message that names what is wrong; the first few wrong tries of a
part also get a *numeric hint* (what the simulator predicts at the learner's own answer, or
which way to go). Past ``NUMERIC_HINTS`` the checker stops saying which way to go, so the
answer is worked out rather than bisected. The counts live in one small JSON file,
``~/.pplab/exercise-attempts.json`` (``$PPLAB_HOME`` moves the folder), written atomically
under a lock, shared by the command line, the notebooks and the app on this machine. The
same answer given twice (a notebook cell run again, an app page redrawn) is one try.

The file also keeps each learner's latest answers, which ``pplab exercise submit`` writes out
to hand in. It is a convenience on the learner's machine, not a proctor: removing it gives
the hints back, and grading (``pplab exercise report``) never reads it.

    pplab exercise submit --learner ada
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pplab.limits import MAX_ATTEMPTS_FILE_BYTES
from pplab.runs.atomic_files import write_text_atomic

HOME_ENV = "PPLAB_HOME"
FILE_NAME = "exercise-attempts.json"
NUMERIC_HINTS = 3  # per learner, exercise and part
_VERSION = 1


def state_path() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".pplab") / FILE_NAME


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the file while it is read, changed and written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        try:
            import fcntl
        except ImportError:  # not POSIX: one writer at a time is then the user's affair
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> dict:
    """The state, or a fresh one where the file is missing, too big or not ours."""
    try:
        if path.stat().st_size > MAX_ATTEMPTS_FILE_BYTES:
            return {"version": _VERSION, "learners": {}}
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": _VERSION, "learners": {}}
    if not isinstance(state, dict) or not isinstance(state.get("learners"), dict):
        return {"version": _VERSION, "learners": {}}
    return state


class AttemptBook:
    """Tries and hints per (learner, exercise, part) in one file (default ``state_path()``)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else state_path()

    def try_answer(self, learner: str, exercise_id: str, part: str, answer: str,
                   right: bool, wants_hint: bool) -> int | None:
        """Record one try; the number of the numeric hint it may show (1..N), else None.

        The same answer as the part's last one is not a new try and gets what it got then.
        Where the file cannot be written (a read-only home), no hint is given rather than
        an unbounded number of them.
        """
        try:
            with _locked(self.path):
                state = _read(self.path)
                entry = self._entry(state, learner, exercise_id, part)
                if entry.get("last") == answer:
                    return entry.get("last_hint")
                entry["tries"] = int(entry.get("tries", 0)) + 1
                hint = None
                if wants_hint and not right and int(entry.get("hints", 0)) < NUMERIC_HINTS:
                    entry["hints"] = hint = int(entry.get("hints", 0)) + 1
                entry.update(last=answer, last_hint=hint, right=right)
                write_text_atomic(self.path, json.dumps(state, indent=1, sort_keys=True))
                return hint
        except OSError:
            return None

    def last_answers(self, learner: str) -> dict[str, dict[str, str]]:
        """The learner's latest answer to every part they tried: {exercise: {part: text}}."""
        exercises = _read(self.path)["learners"].get(learner, {})
        return {exercise_id: {part: entry["last"] for part, entry in parts.items()
                              if isinstance(entry, dict) and isinstance(entry.get("last"), str)}
                for exercise_id, parts in exercises.items() if isinstance(parts, dict)}

    def hints_left(self, learner: str, exercise_id: str, part: str) -> int:
        entry = _read(self.path)["learners"].get(learner, {}).get(exercise_id, {}).get(part, {})
        return NUMERIC_HINTS - int(entry.get("hints", 0)) if isinstance(entry, dict) \
            else NUMERIC_HINTS

    @staticmethod
    def _entry(state: dict, learner: str, exercise_id: str, part: str) -> dict:
        state["version"] = _VERSION
        node = state["learners"]
        for key in (learner, exercise_id, part):
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        return node
