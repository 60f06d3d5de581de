#!/usr/bin/env bash
# Fresh-machine set-up: system tools, a virtual environment in .venv, edge-sync with its dev and docs extras.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# espeak-ng speaks (training data, tests), ffmpeg encodes test media, sox resamples the MFCC oracle's input.
missing=()
for tool in espeak-ng ffmpeg sox; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages first: ${missing[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
# torch is pinned (==2.13.0, a CPU wheel); an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q -e '.[dev,docs]' 2>&1 | grep -v -i "warning" || true  # docs: the MkDocs site
.venv/bin/python -c "import edge_sync, torch; print('edge-sync', edge_sync.__version__, '| torch', torch.__version__)"
