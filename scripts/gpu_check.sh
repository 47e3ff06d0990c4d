#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a bare CUDA machine: an H100/H200 with its driver and
# a Python that already holds torch + torchvision for CUDA, and no package index to reach.
#
#   scripts/gpu_check.sh --download      HERE (PyPI reachable): fetch the wheels such a machine
#                                        lacks into .whl/ (git-ignored via .git/info/exclude),
#                                        pinned to this checkout's .venv versions, for CPython 3.12
#   scripts/gpu_check.sh [ARGS…]         THERE: install .whl/ (if present) into /tmp/site, or the
#                                        project with pip when an index is reachable, then run
#                                        python -m benchmarks.gpu_check --out "$OUT" ARGS…
#
# OUT (default benchmarks/results) receives gpu_check.json and gpu_check.log. The docs table is
# written on that machine's copy; back here, `.venv/bin/python -m benchmarks.gpu_check
# --docs-from OUT/gpu_check.json` writes it into docs/benchmarks.md. PYTHON picks the interpreter
# (default python3), WHEELS the wheel folder (default .whl).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
OUT=${OUT:-benchmarks/results}
# What a CUDA image with torch, torchvision, transformers, timm, numpy, pillow, httpx, pytest and
# hypothesis lacks for the check (the starter model's weight packages are not needed).
MISSING="faiss-cpu fastapi fastapi-offline starlette uvicorn httptools pydantic pydantic-core
pydantic-settings python-dotenv typing-inspection annotated-types python-multipart open-clip-torch
ftfy wcwidth watchfiles threadpoolctl pytest-timeout"

if [[ "${1:-}" == "--download" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
  mkdir -p "$WHEELS"
  for name in $MISSING; do
    pin=$(.venv/bin/python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "$name${pin:+==$pin}"
  done
  du -sh "$WHEELS"
  exit 0
fi

mkdir -p "$OUT"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -c 'import faiss, fastapi, open_clip, uvicorn' 2>/dev/null; then
  "$PY" -m pip install -q -e '.[dev,train,onnx]'
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))'
"$PY" -m benchmarks.gpu_check --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
