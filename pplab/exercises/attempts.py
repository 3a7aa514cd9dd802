"""How often each learner tried each part, so numeric hints run out.

A wrong answer always gets a message that names what is wrong; the first few wrong tries of a
part also get a *numeric hint* (what the simulator predicts at the learner's own answer, or
which way to go). Past ``NUMERIC_HINTS`` the checker stops saying which way to go, so the
answer is worked out rather than bisected. The counts live in one small JSON file,
``~/.pplab/exercise-attempts.json`` (``$PPLAB_HOME`` moves the folder), written atomically
under a lock, shared by the command line, the notebooks and the app on this machine. The
same answer given twice (a notebook cell run again, an app page redrawn) is one try.

Nothing is ever lost to a bad file: a file over ``MAX_ATTEMPTS_FILE_BYTES``, or one that is
not pplab's, is neither read as empty nor overwritten; the try is not recorded and the
feedback says so (``AttemptBook.problem``), and the learner moves the file away. A lab
shared with a class keeps each browser session's tries in that session instead
(``SessionBook``): one learner typing another's name uses up nobody's hints but their own
session's, and nothing of a class's is kept on the server's disk.

The file also keeps each learner's latest answers and how many tries each part took, which
``pplab exercise submit`` writes out to hand in (``submission``; the lab's Lessons page offers
the same file to download) and ``pplab exercise report`` shows. Every check through the
checker is counted (the command line, a notebook's grader, the app); a course may cap the
tries of each part (``PPLAB_MAX_TRIES`` where its learners work; ``report --max-tries``),
past which a new answer is not judged. It is a convenience on the learner's machine, not a
proctor: removing it gives the hints and tries back, and grading reads only what is handed
in.

    pplab exercise submit --learner ada
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pplab.limits import MAX_ATTEMPTS_FILE_BYTES, MAX_SESSION_LEARNERS
from pplab.runs.atomic_files import write_text_atomic

HOME_ENV = "PPLAB_HOME"
MAX_TRIES_ENV = "PPLAB_MAX_TRIES"  # a course's cap on the tries of each part (unset: none)
FILE_NAME = "exercise-attempts.json"
NUMERIC_HINTS = 3  # per learner, exercise and part
_VERSION = 1


class UnreadableAttempts(ValueError):
    """The attempts file is too big or not pplab's: it is left as it is, and says so."""


def max_tries(value: str | None = None) -> int | None:
    """The course's cap on tries per part: ``value``, else $PPLAB_MAX_TRIES, else none."""
    text = (os.environ.get(MAX_TRIES_ENV, "") if value is None else value).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_TRIES_ENV}={text!r}: a cap on tries is a whole number >= 1")
    return int(text)


def state_path() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".pplab") / FILE_NAME


def _fresh() -> dict:
    return {"version": _VERSION, "learners": {}}


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
    """The state; a fresh one where the file is missing. UnreadableAttempts where it is too
    big or not ours: such a file is never taken for an empty one, or it would be overwritten
    and every learner's record in it lost."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return _fresh()
    if size > MAX_ATTEMPTS_FILE_BYTES:
        raise UnreadableAttempts(
            f"{path} is {size / 2**20:.1f} MiB, over pplab's {MAX_ATTEMPTS_FILE_BYTES // 2**20} "
            f"MiB (pplab.limits); move it away to start a new one (hand in your answers "
            f"first: pplab exercise submit)")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UnreadableAttempts(f"{path} cannot be read ({error}); move it away to start a "
                                 f"new one") from None
    if not isinstance(state, dict) or not isinstance(state.get("learners"), dict):
        raise UnreadableAttempts(f"{path} is not pplab's attempts file; move it away to start "
                                 f"a new one")
    return state


class AttemptBook:
    """Tries and hints per (learner, exercise, part) in one file (default ``state_path()``).

    ``problem`` is None, or the one line saying why the last try was not recorded."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else state_path()
        self.problem: str | None = None

    def _load(self) -> dict:
        return _read(self.path)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict]:
        """The state to change, written back atomically if the block ends normally."""
        with _locked(self.path):
            state = _read(self.path)
            yield state
            write_text_atomic(self.path, json.dumps(state, indent=1, sort_keys=True))

    def try_answer(self, learner: str, exercise_id: str, part: str, answer: str,
                   right: bool, wants_hint: bool) -> int | None:
        """Record one try; the number of the numeric hint it may show (1..N), else None.

        The same answer as the part's last one is not a new try and gets what it got then.
        Where the book cannot be written (a read-only home, a file too big or not pplab's),
        the try is not recorded, ``problem`` says why, and no hint is given rather than an
        unbounded number of them.
        """
        self.problem = None
        try:
            with self._changing() as state:
                entry = self._entry(state, learner, exercise_id, part)
                if entry.get("last") == answer:
                    return entry.get("last_hint")
                entry["tries"] = int(entry.get("tries", 0)) + 1
                hint = None
                if wants_hint and not right and int(entry.get("hints", 0)) < NUMERIC_HINTS:
                    entry["hints"] = hint = int(entry.get("hints", 0)) + 1
                entry.update(last=answer, last_hint=hint, right=right)
                return hint
        except UnreadableAttempts as error:
            self.problem = str(error)
        except OSError as error:
            self.problem = f"{self.path} cannot be written: {error.strerror or error}"
        return None

    def last_answers(self, learner: str) -> dict[str, dict[str, str]]:
        """The learner's latest answer to every part they tried: {exercise: {part: text}}.
        UnreadableAttempts where the file is too big or not pplab's."""
        exercises = self._load()["learners"].get(learner, {})
        return {exercise_id: {part: entry["last"] for part, entry in parts.items()
                              if isinstance(entry, dict) and isinstance(entry.get("last"), str)}
                for exercise_id, parts in exercises.items() if isinstance(parts, dict)}

    def tries(self, learner: str) -> dict[str, dict[str, int]]:
        """How many different answers the learner gave each part: {exercise: {part: n}}.
        UnreadableAttempts where the file is too big or not pplab's."""
        exercises = self._load()["learners"].get(learner, {})
        return {exercise_id: {part: int(entry.get("tries", 0)) for part, entry in parts.items()
                              if isinstance(entry, dict)}
                for exercise_id, parts in exercises.items() if isinstance(parts, dict)}

    def used_up(self, learner: str, exercise_id: str, part: str, answer: str,
                cap: int | None) -> bool:
        """Whether ``answer`` would be a try past ``cap`` (the last answer again is not)."""
        if cap is None:
            return False
        try:
            learners = self._load()["learners"]
        except UnreadableAttempts:
            return False  # the try will not be recorded; the feedback says why
        entry = learners.get(learner, {}).get(exercise_id, {}).get(part, {})
        if not isinstance(entry, dict) or entry.get("last") == answer:
            return False
        return int(entry.get("tries", 0)) >= cap

    def hints_left(self, learner: str, exercise_id: str, part: str) -> int:
        try:
            learners = self._load()["learners"]
        except UnreadableAttempts:
            return 0
        entry = learners.get(learner, {}).get(exercise_id, {}).get(part, {})
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


class SessionBook(AttemptBook):
    """The same book held in memory: one browser session's tries in a lab shared by a class
    (the app keeps one in each session's state). Nothing is written to disk."""

    def __init__(self) -> None:
        super().__init__(path=os.devnull)
        self._state = _fresh()

    def _load(self) -> dict:
        return self._state

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict]:
        known = set(self._state["learners"])
        yield self._state
        if len(self._state["learners"]) > MAX_SESSION_LEARNERS:
            for learner in set(self._state["learners"]) - known:
                del self._state["learners"][learner]
            raise UnreadableAttempts(f"this browser session already holds the tries of "
                                     f"{MAX_SESSION_LEARNERS} names; open a new one")


def submission(book: AttemptBook, learner: str) -> dict:
    """What ``pplab exercise submit`` hands in for ``learner``: their latest typed answers
    and how many tries each part took (a schedule file of the coding lab is handed in as the
    file itself)."""
    answers = {exercise_id: {part: text for part, text in parts.items()
                             if not text.startswith("function ")}
               for exercise_id, parts in book.last_answers(learner).items()}
    answers = {exercise_id: parts for exercise_id, parts in answers.items() if parts}
    tries = book.tries(learner)
    return {"learner": learner, "answers": answers,
            "tries": {exercise_id: {part: tries.get(exercise_id, {}).get(part, 0)
                                    for part in parts} for exercise_id, parts in answers.items()}}
