"""What the command tests share: run ``pplab ...`` in-process, and read its JSON strictly."""

from __future__ import annotations

import json

from pplab.cli import main as cli


def run_pplab(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``pplab ARGV...``, argparse's own exits included."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text: str):
    """``json.loads`` that fails on NaN and Infinity, which strict JSON readers refuse."""
    def refuse(constant):
        raise AssertionError(f"{constant} is not strict JSON")

    return json.loads(text, parse_constant=refuse)
