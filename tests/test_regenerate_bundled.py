"""Every bundled run and comparison can be made again by one command, from what it records.

``scripts/regenerate_bundled.py`` rebuilds each ``pplab train`` / ``pplab compare`` command
from the bundle's own metadata; here each rebuilt command must be one pplab accepts, and
must ask for the configuration the bundle was trained with.

    .venv/bin/python -m pytest -q tests/test_regenerate_bundled.py
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pplab.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "regenerate_bundled.py"


def _script():
    spec = importlib.util.spec_from_file_location("regenerate_bundled", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bundle_is_listed_and_its_command_asks_for_what_it_recorded(tmp_path):
    script = _script()
    found = script.bundles()
    assert {kind for _, _, kind in found} == {"run", "comparison"}
    for name, folder, kind in found:
        if kind == "run":
            config = json.loads((folder / "meta.json").read_text())["config"]
            command = script.train_command(config, tmp_path / name)
            args = build_parser().parse_args(command[3:])
            assert (args.schedule, args.pp_size, args.microbatches, args.steps) == (
                config["schedule"], config["pp_size"], config["microbatches"],
                config["steps"]), name
            assert args.d_model == config["d_model"] and args.lr == config["lr"], name
        else:
            command = script.compare_command(folder, tmp_path / name)
            rows = json.loads((folder / "comparison.json").read_text())["rows"]
            assert command[4:4 + len(rows)] == [row["configuration"] for row in rows], name
            build_parser().parse_args(command[3:])


def test_an_unknown_bundle_is_refused_in_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "no-such-run", "--list"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no bundle ['no-such-run']" in done.stderr


@pytest.mark.slow  # one pplab process per bundle, each checking its machine and folders
def test_every_regeneration_passes_its_dry_run():
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("every check passed") == len(_script().bundles())
