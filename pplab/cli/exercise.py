"""``pplab exercise``: the lessons' exercises from a shell, for learners and instructors.

Learners see their own numbers (``show``), check answers (``check``: exit 0 when every part
given is right, 1 when one is wrong, 2 for an answer that cannot be read) and write their
latest answers to a file to hand in (``submit``). The coding lab is checked from its file.
Instructors turn a folder of handed-in files into a grade table (``report``). Every command
is a thin face over ``pplab.exercises``, which the app's Lessons page and the notebooks use
too.

    pplab exercise list
    pplab exercise show bubble --learner ada
    pplab exercise check bubble --learner ada 27 fewer-stages "p/b"
    pplab exercise check schedule-lab --file my_schedules.py --train
    pplab exercise submit --learner ada
    pplab exercise report submissions/ --out grades.csv
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "exercise", help="the lessons' exercises: list, show, check, submit, report",
        description="Exercises drawn for each learner (numbers from your name), checked by "
                    "the simulator; a coding lab checked from your file; grade reports.")
    actions = parser.add_subparsers(dest="exercise_command", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="list the exercises and their lessons")
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help="an exercise with your numbers")
    show.add_argument("exercise", metavar="ID")
    _add_learner(show)
    show.set_defaults(func=cmd_show)

    check = actions.add_parser(
        "check", help="check your answers (exit 0 right, 1 wrong, 2 unreadable)",
        description="Answers go in part order (27 fewer-stages \"p/b\") or labelled "
                    "(a=27 c=\"p/b\"); quote one that holds spaces or parentheses.")
    check.__class__ = _intermixed(type(check))
    check.add_argument("exercise", metavar="ID")
    check.add_argument("answers", nargs="*", metavar="ANSWER")
    _add_learner(check)
    check.add_argument("--file", type=Path, help="schedule-lab: your schedule file")
    check.add_argument("--train", action="store_true",
                       help="schedule-lab: then train one on the real engine and export it "
                            "for PyTorch (about 10 s)")
    check.add_argument("--out", type=Path, metavar="DIR",
                       help="schedule-lab --train: where the run and its CSV go (default "
                            "$PPLAB_RUNS_DIR or runs/)")
    check.set_defaults(func=cmd_check)

    submit = actions.add_parser("submit", help="write your latest answers to a file to hand in")
    _add_learner(submit)
    submit.add_argument("--out", type=Path, metavar="FILE", help="default NAME.json here")
    submit.set_defaults(func=cmd_submit)

    report = actions.add_parser(
        "report", help="grade a folder of submissions into a CSV or JSON table",
        description="Grade every NAME.json (answers) and NAME.py (coding lab) in a folder.")
    report.add_argument("folder", type=Path, metavar="DIR")
    report.add_argument("--out", type=Path, metavar="FILE",
                        help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    report.add_argument("--exercises", metavar="ID,ID",
                        help="the exercises of the assignment (default: all)")
    report.add_argument("--course", help="the course key learners used (default $PPLAB_COURSE)")
    report.add_argument("--max-tries", type=_tries_cap, metavar="N",
                        help="no point for a part answered right after more than N tries")
    report.add_argument("--attempts", type=Path, metavar="FILE",
                        help="read the tries from this attempts file (a lab server's) instead "
                             "of the ones handed in")
    report.set_defaults(func=cmd_report)
    return parser


def _tries_cap(text: str) -> int:
    from pplab.exercises.attempts import max_tries

    try:
        return max_tries(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).split(": ", 1)[-1]) from None


def _intermixed(parser_class: type) -> type:
    """The parser class, reading options and answers in any order.

    Plain argparse gives a ``*`` positional nothing when an option comes between the ID and
    the answers (``check bubble --learner ada 27``) and then refuses the answers as extra
    arguments; its intermixed parsing, which itself calls ``parse_known_args``, does not.
    """

    class Intermixed(parser_class):
        _inside = False

        def parse_known_args(self, args=None, namespace=None):
            if self._inside:
                return super().parse_known_args(args, namespace)
            self._inside = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._inside = False

    return Intermixed


def _add_learner(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learner", metavar="NAME",
                        help="your name: your numbers depend on it (default $PPLAB_LEARNER)")
    parser.add_argument("--course", help="a course key from your instructor "
                                         "(default $PPLAB_COURSE)")


def _learner(args: argparse.Namespace) -> str | None:
    from pplab.exercises import LEARNER_ENV

    return args.learner or os.environ.get(LEARNER_ENV) or None


def cmd_list(args: argparse.Namespace) -> int:
    from pplab.exercises import EXERCISES

    width = max(len(i) for i in EXERCISES)
    for exercise_id, exercise in EXERCISES.items():
        parts = ", ".join(exercise.part_keys)
        print(f"{exercise_id.ljust(width)}  {exercise.title} ({exercise.kind}: {parts})")
        print(f"{' ' * width}  lessons/{exercise.lesson}/")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from pplab.exercises import get_exercise, learner_key
    from pplab.exercises.coding_lab import CodingLab

    exercise = get_exercise(args.exercise)
    learner = _learner(args)
    if not isinstance(exercise, CodingLab):
        learner_key(learner)  # one clear line when no name is given
    print(exercise.show(learner, args.course))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from pplab.exercises import AttemptBook, BadAnswer, check, get_exercise
    from pplab.exercises.coding_lab import CodingLab

    exercise = get_exercise(args.exercise)
    if isinstance(exercise, CodingLab):
        return _check_lab(args, exercise)
    if args.file is not None or args.train:
        raise BadAnswer(f"--file and --train belong to the coding lab; {exercise.id} is "
                        f"answered with ANSWER...")
    verdicts = check(exercise, _learner(args), args.answers, course=args.course,
                     book=AttemptBook())
    for verdict in verdicts:
        print(verdict.line())
    right = sum(v.right for v in verdicts)
    still = [k for k in exercise.part_keys if k not in {v.part for v in verdicts}]
    print(f"{right} of {len(verdicts)} answered parts right"
          + (f"; still to answer: {', '.join(still)}" if still else ""))
    return 0 if right == len(verdicts) else 1


def _check_lab(args: argparse.Namespace, lab) -> int:
    from pplab.exercises import BadAnswer
    from pplab.exercises.report import declared_learner

    if args.answers:
        raise BadAnswer(f"{args.exercise} is checked from your file: --file {lab.skeleton}")
    if args.train and lab.id != "schedule-lab":
        raise BadAnswer(f"--train trains a schedule of schedule-lab; {lab.id} runs your "
                        f"runtime itself")
    if args.file is None:
        raise BadAnswer(f"{args.exercise} needs --file FILE (your copy of the skeleton; "
                        f"pplab exercise show {args.exercise} says where it is)")
    learner = _learner(args) or (declared_learner(args.file) if args.file.is_file() else None)
    result = lab.check_file(args.file, learner, args.course)
    print(result)
    code = 0 if result.all_right else 1
    if args.train:
        from pplab.exercises.lab_training import train_one
        from pplab.runs.catalog import user_runs_dir

        worked, lines = train_one(args.file, result, args.out or user_runs_dir())
        print("\n".join(lines))
        code = code if worked else 1
    return code


def cmd_submit(args: argparse.Namespace) -> int:
    from pplab.exercises import AttemptBook, BadAnswer, learner_key
    from pplab.exercises.attempts import submission
    from pplab.runs.atomic_files import write_text_atomic

    learner = learner_key(_learner(args))
    handed_in = submission(AttemptBook(), learner)
    answers = handed_in["answers"]
    if not answers:
        raise BadAnswer(f"no answers of {learner!r} are recorded on this machine yet; check "
                        f"some first (pplab exercise check ID --learner NAME ...)")
    out = args.out or Path(re.sub(r"[^\w.-]+", "-", learner).strip("-.") + ".json")
    write_text_atomic(out, json.dumps(handed_in, indent=1) + "\n")
    listed = "; ".join(f"{i} ({', '.join(sorted(parts))})" for i, parts in answers.items())
    print(f"wrote {out}: your latest answers to {listed}, and the tries each took. Hand it in "
          f"(with your schedule file for the coding lab).")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pplab.exercises import BadAnswer
    from pplab.exercises.report import csv_table, grade_folder, json_table
    from pplab.runs.atomic_files import write_text_atomic

    ids = [i.strip() for i in args.exercises.split(",") if i.strip()] if args.exercises else None
    if args.out is not None and args.out.suffix not in (".csv", ".json"):
        raise BadAnswer(f"--out {args.out}: name a .csv or a .json file")
    rows, ids, skipped = grade_folder(args.folder, ids, args.course, args.max_tries,
                                      args.attempts)
    for note in skipped:
        print(f"pplab exercise report: skipped {note}", file=sys.stderr)
    as_json = args.out is not None and args.out.suffix == ".json"
    table = json_table(rows, ids, skipped) if as_json else csv_table(rows, ids)
    if args.out is None:
        sys.stdout.write(table)
        return 0
    write_text_atomic(args.out, table)
    print(f"wrote {args.out}: {len(rows)} learners, {', '.join(ids)}")
    return 0
