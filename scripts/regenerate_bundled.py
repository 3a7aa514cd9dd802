"""Regenerate every bundled run and comparison under data/ from what each one records.

What it teaches: shipped measurements are only worth what their recipe is. Each bundled run's
meta.json keeps the configuration it was trained with, and each comparison keeps its members'
configurations; this script reads them, trains each again with ``pplab train`` /
``pplab compare`` into a fresh folder, fits its calibration (calibration.json, what the Runs
page and ``pplab predict`` read), and only then puts it in place of the old one. The lessons'
other bundled data (listed in ``EXTRA``) are made by their own scripts. Run it on a quiet
machine: runs of at most as many ranks as cores measure the schedule, the others measure CPU
sharing too (their metadata says so).

    .venv/bin/python scripts/regenerate_bundled.py --list
    .venv/bin/python scripts/regenerate_bundled.py                  # everything (minutes)
    .venv/bin/python scripts/regenerate_bundled.py --only 1f1b-p2m8
    .venv/bin/python scripts/regenerate_bundled.py --calibrations   # refit only, no training

A calibration is derived from the recorded events, so ``--calibrations`` refits every
bundled calibration.json in place (when the model's terms change) and times nothing: it needs
no quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
PPLAB = [sys.executable, "-m", "pplab"]
# Bundled data that is not one training run or comparison: (name, command, what it writes).
EXTRA: list[tuple[str, list[str], str]] = [
    ("staleness-p2", ["benchmarks/staleness.py", "--out", "data/comparisons/staleness-p2"],
     "data/comparisons/staleness-p2/staleness.json"),  # lesson 7's loss at equal updates
]

# meta.json "config" key -> pplab train option; None values are left to the defaults.
TRAIN_OPTIONS = {"schedule": "--schedule", "pp_size": "--pp", "microbatches": "--microbatches",
                 "chunks": "--chunks", "steps": "--steps", "layers": "--layers",
                 "batch_size": "--batch-size", "seq_len": "--seq-len", "d_model": "--d-model",
                 "heads": "--heads", "d_ff": "--d-ff", "task": "--task", "lr": "--lr",
                 "dtype": "--dtype", "seed": "--seed", "tp_size": "--tp", "dp_size": "--dp"}


def train_command(config: dict, out: Path) -> list[str]:
    """The ``pplab train`` command that makes a run with this recorded configuration."""
    if config.get("csv") or config.get("text") or config.get("device", "cpu") != "cpu":
        raise ValueError("only CPU runs of a registered schedule on a built-in task are "
                         "regenerated here")
    command = [*PPLAB, "train", "--out", str(out), "--oversubscribe"]
    for key, option in TRAIN_OPTIONS.items():
        if config.get(key) is not None:
            command += [option, str(config[key])]
    if config.get("split"):
        command += ["--split", ",".join(str(n) for n in config["split"])]
    return command


def compare_command(folder: Path, out: Path) -> list[str]:
    """The ``pplab compare`` command that makes a comparison with these members again."""
    summary = json.loads((folder / "comparison.json").read_text())
    # Each row keeps its configuration as it was typed (``tp:tp=4``); the members' own
    # metadata has what all of them share.
    specs = [row["configuration"] for row in summary["rows"]]
    configs = [json.loads((folder / row["run"] / "meta.json").read_text())["config"]
               for row in summary["rows"]]
    first = configs[0]
    return [*PPLAB, "compare", *specs, "--out", str(out), "--oversubscribe",
            "--steps", str(first["steps"]), "--layers", str(first["layers"]),
            "--batch-size", str(first["batch_size"]), "--seq-len", str(first["seq_len"]),
            "--d-model", str(first["d_model"]), "--lr", str(first["lr"]),
            "--seed", str(first["seed"]), "--description", summary.get("description", "")]


def bundles() -> list[tuple[str, Path, str]]:
    """(name, folder, kind) of every bundled run and comparison, in a stable order."""
    runs = [(p.name, p, "run") for p in sorted((DATA / "runs").iterdir())
            if (p / "meta.json").is_file()]
    comparisons = [(p.name, p, "comparison") for p in sorted((DATA / "comparisons").iterdir())
                   if (p / "comparison.json").is_file()]
    return runs + comparisons


def calibrate(run_folder: Path) -> None:
    from pplab.calibration import calibration_for
    from pplab.runs.run_dirs import load_run

    calibration_for(load_run(run_folder))  # fitted and written beside the run


def refit(folder: Path, kind: str) -> None:
    """Fit the calibration of a bundle's runs again from their recorded events, in place."""
    from pplab.calibration.store import CALIBRATION_FILE

    members = [folder] if kind == "run" else [p for p in sorted(folder.iterdir())
                                              if (p / "meta.json").is_file()]
    for member in members:
        (member / CALIBRATION_FILE).unlink(missing_ok=True)
        calibrate(member)
        print(f"{member.relative_to(ROOT)}: {CALIBRATION_FILE} refitted", flush=True)


def regenerate(name: str, folder: Path, kind: str, dry_run: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=folder.parent) as scratch:
        fresh = Path(scratch) / name
        if kind == "run":
            config = json.loads((folder / "meta.json").read_text())["config"]
            command = train_command(config, fresh)
        else:
            command = compare_command(folder, fresh)
        print(f"{name}: {' '.join(command[2:])}", flush=True)
        subprocess.run(command + ["--dry-run"] * dry_run, check=True, cwd=ROOT)
        if dry_run:
            return
        members = [fresh] if kind == "run" else [p for p in fresh.iterdir()
                                                 if (p / "meta.json").is_file()]
        for member in members:
            calibrate(member)
        old = Path(scratch) / f"{name}.old"
        folder.rename(old)  # then the new one in its place: never half of either
        fresh.rename(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="regenerate this bundle only (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--dry-run", action="store_true",
                        help="let each command check everything and start nothing")
    parser.add_argument("--calibrations", action="store_true",
                        help="only refit every calibration.json from the recorded events")
    args = parser.parse_args(argv)
    found = bundles()
    names = {name for name, _, _ in found} | {name for name, _, _ in EXTRA}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        print(f"regenerate_bundled: no bundle {unknown}; there are {sorted(names)}",
              file=sys.stderr)
        return 2
    chosen = [b for b in found if not args.only or b[0] in args.only]
    extras = [e for e in EXTRA if not args.only or e[0] in args.only]
    try:
        for name, folder, kind in chosen:
            if args.calibrations:
                refit(folder, kind)
                continue
            if args.list:
                command = (train_command(json.loads((folder / "meta.json").read_text())
                                         ["config"], folder) if kind == "run"
                           else compare_command(folder, folder))
                print(f"{name}: {' '.join(command[2:])}")
            else:
                regenerate(name, folder, kind, args.dry_run)
        for name, command, writes in extras if not args.calibrations else ():
            print(f"{name}: {' '.join(command)}  (writes {writes})", flush=True)
            if not (args.list or args.dry_run):
                subprocess.run([sys.executable, *command], check=True, cwd=ROOT)
    except (ValueError, KeyError, OSError, subprocess.CalledProcessError) as error:
        print(f"regenerate_bundled: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
