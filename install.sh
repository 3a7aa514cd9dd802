#!/usr/bin/env bash
# Install pplab into ./.venv without pulling a multi-GB CUDA build of torch onto a machine
# that has no NVIDIA GPU.
#
#   bash install.sh        # the lab
#   bash install.sh dev    # the lab plus the test tools
#
# torch is chosen in this order: one already in .venv; a wheel this machine keeps locally
# (pip's find-links); the default build where an NVIDIA GPU or macOS is present; otherwise
# PyTorch's CPU-only build.
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
torch_range='torch>=2.4,<3'

[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
$py -m pip install -q --upgrade pip >/dev/null 2>&1 || true

if ! $py -c 'import torch' >/dev/null 2>&1; then
    if $py -m pip install -q --no-index --no-deps "$torch_range" >/dev/null 2>&1; then
        echo "install.sh: torch from a wheel kept on this machine"
    elif command -v nvidia-smi >/dev/null 2>&1 || [ "$(uname -s)" = Darwin ]; then
        $py -m pip install -q "$torch_range"
    else
        echo "install.sh: no NVIDIA GPU found; installing the CPU-only build of torch"
        $py -m pip install -q "$torch_range" --index-url https://download.pytorch.org/whl/cpu
    fi
fi

if [ -n "$extras" ]; then
    $py -m pip install -q -e ".[$extras]"
else
    $py -m pip install -q -e .
fi
echo "install.sh: pplab installed in .venv ($($py -c 'import torch; print("torch", torch.__version__)'))"
