#!/usr/bin/env bash
# Build the kit that a training stage of scripts/train_bundled.sh needs on a lent GPU machine that has PyTorch but no
# network, no espeak-ng and not every package edge-sync imports. Writes .gpu/ (ignored by git):
#   small.tar.xz     pure-Python and small packages (typer, tqdm, jsonschema, ... for CPython 3.12, x86-64)
#   cv2.tar.xz       OpenCV 4 headless (only where the machine's python has none)
#   av.tar.xz        PyAV (real-clip stages: decoding)
#   speechN.tar.xz   the first N utterances of the training speech bank (espeak-ng runs here, not there)
#   rt/              the real training clips (REAL's `real` clips outside the hold-out) and REAL's MANIFEST.tsv
#                    and the real-suspect clips of scripts/real_suspect_offsets.tsv (for SUSPECTS=1)
#   extra/           a copy of the folder EXTRA names (clips + MANIFEST.tsv, pseudo-labels included), when EXTRA is set:
#                    the stage on the lent machine then runs with EXTRA=.gpu/extra (a stale copy trains on other labels)
# Usage: [EXTRA=DIR] bash scripts/device_kit.sh [BANK [REAL]]   (BANK: 400 for the synthetic stages, 56 for student-real)
# Then each call of the device tool carries what its stage needs and runs, from the repository root there,
#   bash scripts/device_run.sh COMMAND...
# The carried tree is limited (64 MiB with the tracked files): the synthetic stages carry small + speech400;
# student-real carries small + av + speech56 + rt (about 61 MiB with them); cv2 only where the machine lacks OpenCV
# (the lent H100s had their own OpenCV 5 in sessions 25-26, so cv2 never needed to travel). With EXTRA, split it over
# two calls on one warm machine: small + speech56 + av first, then rt + extra and the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bank=${1:-400}
real=${2:-../shared/real_clips}
py=.venv/bin/python
[ -x "$py" ] || py=python3
kit=.gpu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$kit"
download() {  # download DIR SPEC... -> wheels for the device's CPython 3.12 on x86-64
  local dir=$1; shift
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" "$@"
}
pack() {  # pack NAME WHEEL... -> .gpu/NAME.tar.xz of the wheels unpacked (a wheel is a zip of site-packages)
  local name=$1 dir="$work/$1"; shift
  mkdir -p "$dir"
  for w in "$@"; do "$py" -m zipfile -e "$w" "$dir"; done
  tar cf - -C "$dir" . | xz -6 -T0 > "$kit/$name.tar.xz"
}
download "$work/wheels/small" typer tqdm jsonschema jsonschema-specifications referencing rpds-py attrs rich shellingham \
  markdown-it-py mdurl pygments annotated-doc pydantic pydantic-core typing-inspection annotated-types
pack small "$work"/wheels/small/*.whl
download "$work/wheels/cv2" "opencv-python-headless>=4.8,<5"  # 4.x is all training needs (YuNet runs on onnxruntime)
pack cv2 "$work"/wheels/cv2/*.whl
download "$work/wheels/av" "av>=12"
pack av "$work"/wheels/av/*.whl
# the speech bank, synthesised here (espeak-ng) into a cache of its own, so exactly the first BANK utterances travel
EDGE_SYNC_CACHE="$work/cache" "$py" -c "from edge_sync.data.synthetic import prepare_speech_bank
prepare_speech_bank('train', None, progress=False, bank_size=$bank)"
tar cf - -C "$work/cache" speech | xz -6 -T0 > "$kit/speech$bank.tar.xz"
rm -rf "$kit/rt" && mkdir -p "$kit/rt"
if [ -f "$real/MANIFEST.tsv" ]; then  # the same clips as scripts/real_train_dir.sh: real, not held out
  bash scripts/real_training_clips.sh "$(realpath "$real")" | while read -r f; do cp -L "$real/$f" "$kit/rt/"; done
  # and the real-suspect clips SUSPECTS=1 adds, realigned (scripts/real_suspect_offsets.tsv; a few MB)
  grep -v '^#' scripts/real_suspect_offsets.tsv | tail -n +2 | cut -f1 | while read -r f; do cp -L "$real/$f" "$kit/rt/"; done
  cp "$real/MANIFEST.tsv" "$kit/rt/"
fi
if [ -n "${EXTRA:-}" ]; then  # rebuilt every time, so the lent machine never trains on an older manifest
  [ -f "$EXTRA/MANIFEST.tsv" ] || { echo "device_kit: EXTRA=$EXTRA has no MANIFEST.tsv" >&2; exit 2; }
  rm -rf "$kit/extra" && mkdir -p "$kit/extra"
  cut -f1 "$EXTRA/MANIFEST.tsv" | tail -n +2 | while read -r f; do cp -L "$EXTRA/$f" "$kit/extra/"; done
  cp "$EXTRA/MANIFEST.tsv" "$kit/extra/"
fi
du -sh "$kit"/*
