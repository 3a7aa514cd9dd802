#!/usr/bin/env bash
# Install pplab into ./.venv without pulling a multi-GB CUDA build of torch onto a machine
# that has no NVIDIA GPU. Says what it is doing before each step.
#
#   bash install.sh                  # the lab
#   bash install.sh dev              # the lab plus the test tools (pytest, ruff, playwright)
#   bash install.sh notebooks        # the lab plus Jupyter, to run lessons/NN-*/lesson.ipynb
#   bash install.sh dev notebooks    # both
#
# torch is chosen in this order: one already in .venv; a wheel this machine keeps locally
# (pip's find-links); the default build where an NVIDIA GPU or macOS is present; otherwise
# PyTorch's CPU-only build.
set -euo pipefail
cd "$(dirname "$0")"
torch_range='torch>=2.4,<3'

say() { echo "install.sh: $*"; }

extras=""  # pyproject's optional groups, comma-separated
for group in "$@"; do
    case "$group" in
        dev|notebooks) extras="${extras:+$extras,}$group" ;;
        *) echo "install.sh: unknown option '$group'; use dev and/or notebooks" >&2; exit 2 ;;
    esac
done

if [ -x .venv/bin/python ]; then
    say "using the environment in .venv"
else
    say "creating a Python environment in .venv"
    python3 -m venv .venv
fi
py=.venv/bin/python

say "updating pip"
$py -m pip install -q --upgrade pip >/dev/null 2>&1 || say "could not update pip; going on"

if version=$($py -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    say "torch $version is already in .venv"
else
    say "installing torch: first looking for a wheel kept on this machine"
    if $py -m pip install -q --no-index --no-deps "$torch_range" >/dev/null 2>&1; then
        say "installed torch from a wheel kept on this machine"
    elif command -v nvidia-smi >/dev/null 2>&1 || [ "$(uname -s)" = Darwin ]; then
        say "downloading torch's default build (with CUDA about 2-3 GB: several minutes)"
        $py -m pip install --progress-bar on "$torch_range"
    else
        say "no NVIDIA GPU found: downloading PyTorch's CPU-only build (about 200 MB)"
        $py -m pip install --progress-bar on "$torch_range" \
            --index-url https://download.pytorch.org/whl/cpu
    fi
fi

what="pplab and what it needs (streamlit, plotly, pandas, pyarrow)"
case ",$extras," in
    *,dev,*) what="$what, the test tools (pytest, hypothesis, ruff, playwright)" ;;
esac
case ",$extras," in *,notebooks,*) what="$what, Jupyter (jupyterlab, ipykernel)" ;; esac
say "installing $what; a first install downloads them (a minute or two)"
# setuptools warns about every editable install in ten lines; nothing to act on here.
PYTHONWARNINGS="ignore:Editable installation" $py -m pip install -q -e ".${extras:+[$extras]}"

say "done: pplab is in .venv, with torch $($py -c 'import torch; print(torch.__version__)')"
say "open the lab: .venv/bin/pplab lab    (every command: README.md)"
case ",$extras," in *,dev,*) say "run the tests: .venv/bin/python -m pytest -q" ;; esac
case ",$extras," in *,notebooks,*) say "open the notebooks: .venv/bin/jupyter lab lessons/" ;; esac
