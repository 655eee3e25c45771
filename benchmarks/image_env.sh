#!/usr/bin/env bash
# The GPU device's image, rebuilt on a CPU machine: its python (3.12), torch 2.11, triton 3.6 and
# numpy 2.5.2, and the other packages the suite reads that the image holds (device tool's
# KINDS.md: scikit-learn, scipy, matplotlib, networkx, tqdm, torchvision, timm, psutil; no
# optuna, pgserver or pykeops). The project is not installed: it runs from PYTHONPATH, as it
# does on the device. Then the suite, with triton's interpreter on the CPU.
#
#     bash benchmarks/image_env.sh [VENV]          # default /tmp/spatial-image-venv
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/spatial-image-venv}
PY=${PYTHON312:-$(command -v python3.12 || echo /root/.pyenv/versions/3.12.1/bin/python)}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==2.11.0" "triton==3.6.0" "numpy==2.5.2" numba pytest pytest-benchmark \
    scikit-learn scipy matplotlib networkx tqdm "torchvision==0.26.0" timm psutil
fi
"$VENV/bin/python" -c "import sys, torch, triton, numpy, numba; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__, 'numba', numba.__version__)"
PYTHONPATH="$PWD" "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider -rs
