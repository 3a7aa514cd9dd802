"""Classroom mode: one lab served to a class, where only the instructor starts processes.

``pplab lab --classroom`` makes a passcode, prints it with the address, and hands the server
only the passcode's SHA-256 digest (``PPLAB_CLASSROOM_DIGEST``), never the passcode itself.
In the lab, every page that only reads or simulates stays open to everyone; what starts
processes or writes files (training, the coding lab's grader, a calibration written beside a
run) asks for the passcode first. A typed passcode is hashed and compared with
``hmac.compare_digest``, in time that does not depend on where the two first differ, so a
student cannot find it one character at a time by timing the answers.

    PPLAB_CLASSROOM_DIGEST=$(python -c "from pplab.classroom.passcode import digest; \
    print(digest('x'))")
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from pplab.limits import MAX_PASSCODE_CHARS

DIGEST_ENV = "PPLAB_CLASSROOM_DIGEST"
PASSCODE_WORDS = 3  # three short random words' worth of letters: easy to read off a projector
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


def new_passcode(groups: int = PASSCODE_WORDS) -> str:
    """A fresh passcode such as ``k7rm-x2qa-9tdu`` from the operating system's randomness."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(groups))


def digest(passcode: str) -> str:
    """The hex SHA-256 of a passcode as typed (surrounding spaces and case do not matter)."""
    return hashlib.sha256(passcode.strip().casefold().encode()).hexdigest()


def classroom_digest() -> str | None:
    """The passcode digest this server was started with, or None where there is none (outside
    classroom mode, or a value that is not a SHA-256 digest: see ``digest_problem``)."""
    value = os.environ.get(DIGEST_ENV, "").strip().lower()
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None


def in_classroom() -> bool:
    """Whether the server was started for a class. Any value of ``PPLAB_CLASSROOM_DIGEST``,
    even a malformed one, counts: a typo in it must close the lab (no passcode then matches),
    never open it to every student."""
    return DIGEST_ENV in os.environ


def digest_problem() -> str | None:
    """One line when classroom mode is on but no passcode can ever match, else None."""
    if in_classroom() and classroom_digest() is None:
        return (f"{DIGEST_ENV} is set but is not a SHA-256 digest (64 hex digits): nobody can "
                f"unlock the instructor's pages; restart the lab with pplab lab --classroom")
    return None


def passcode_matches(typed: object) -> bool:
    """Whether ``typed`` is this classroom's passcode, compared in constant time."""
    expected = classroom_digest()
    if expected is None or not isinstance(typed, str) or len(typed) > MAX_PASSCODE_CHARS:
        return False
    return hmac.compare_digest(digest(typed).encode(), expected.encode())
