"""The ``pplab`` command: schedules, simulate, validate, search, train, compare, plan,
predict, exercise and lab.

The CLI is thin: it parses, calls the library and prints. A user mistake ends with one line
``pplab: error: ...`` and exit status 2, before any work: sizes are bounded by
``pplab.limits`` and every output file is checked writable first; ``validate`` exits 1 for
a schedule that cannot run. ``--json`` prints strict JSON (null, never NaN). Whatever else
goes wrong is still one line (``pplab: internal error: ...``, exit 1; ``PPLAB_DEBUG=1``
shows the traceback), never a traceback by default.
``search``, ``train``, ``compare``, ``plan``, ``predict``, ``exercise`` and ``lab`` keep their
options beside their code (``pplab.cli.search``, ``pplab.cli.train``, ...),
whose modules import no torch until they run: ``schedules``, ``simulate`` and ``validate``
never import it.

    pplab simulate --schedule 1f1b --pp 4 --microbatches 8
    pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --save-csv zb-h1.csv
    python -m pplab simulate --schedule zb-h1 --pp 4 --microbatches 8 --json
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one short line instead of the full usage
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pplab", description="Learn pipeline parallelism by running it.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True

    # Imported here, not at the top: `pplab --help` stays quick. None of them imports torch
    # before its command runs.
    from pplab.cli.compare import add_parser as add_compare
    from pplab.cli.demo import add_parser as add_demo
    from pplab.cli.exercise import add_parser as add_exercise
    from pplab.cli.lab import add_parser as add_lab
    from pplab.cli.plan import add_parser as add_plan
    from pplab.cli.predict import add_parser as add_predict
    from pplab.cli.search import add_parser as add_search
    from pplab.cli.simulate import add_parsers as add_simulate
    from pplab.cli.train import add_parser as add_train

    for add in (add_simulate, add_search, add_train, add_compare, add_plan, add_predict,
                add_exercise, add_lab, add_demo):
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as error:
        reason = getattr(error, "reason", None) or str(error)
        lines = reason.strip().splitlines() or [type(error).__name__]
        print(f"pplab: error: {lines[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # Python flushes stdout at exit
        return 1
    except OSError as error:  # e.g. --trace or --save into a folder that cannot be written
        where = f"{error.filename}: " if error.filename else ""
        print(f"pplab: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pplab: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, with the way to see more
        if os.environ.get("PPLAB_DEBUG"):
            raise
        text = str(error).strip().splitlines()
        print(f"pplab: internal error: {type(error).__name__}: {text[0] if text else ''} "
              f"(a bug in pplab; PPLAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
