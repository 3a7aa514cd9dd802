"""The shell face every lesson's exercise shares: read one answer, check it, say why.

A lesson's ``exercise.py`` holds the question and a ``check(answer) -> (right, message)`` that
runs the simulator; this turns them into a command with the exit codes scripts expect.

    python lessons/01-the-bubble/exercise.py 10
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def exercise_main(argv: list[str], *, question: str, answer_name: str,
                  read: Callable[[str], object | None], unreadable: str,
                  check: Callable[[str], tuple[bool, str]]) -> int:
    """Exit 2 with one line for no answer or one ``read`` cannot parse; else print ``check``'s
    message and exit 0 when right, 1 when wrong."""
    if len(argv) != 1:
        print(f"usage: python exercise.py {answer_name}\n{question}", file=sys.stderr)
        return 2
    if read(argv[0]) is None:
        print(f"exercise: {argv[0]!r} {unreadable}", file=sys.stderr)
        return 2
    right, message = check(argv[0])
    print(message)
    return 0 if right else 1
