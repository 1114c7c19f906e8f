#!/usr/bin/env bash
# Create ./.venv and install everything the project needs (idempotent).
#   CPU (default):  bash setup.sh             -> torch==2.13.0 CPU build
#   GPU:            install a CUDA build of torch into .venv first (python -m venv .venv;
#                   .venv/bin/pip install torch==2.13.0 from PyTorch's CUDA index), then
#                   bash setup.sh             -> an existing torch is kept
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    # Pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
    .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -c 'import torch; print(f"setup.sh: torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")'
