#!/usr/bin/env bash
# Reproduce the bundled weights with the repo's own recipe.
#   bash scripts/train_bundled.sh teacher          # SyncNetFCN teacher                -> runs/teacher.pt
#   bash scripts/train_bundled.sh distill          # X3D student distilled from it      -> runs/student_distilled.pt
#   bash scripts/train_bundled.sh student-direct   # X3D student trained without a teacher (baseline row)
#   bash scripts/train_bundled.sh bundle           # hold-out eval, float16 copies + ONNX artifact in edge_sync/weights/
# Every stage is resumable: rerun the same line after an interruption (same settings).
#
# This 2-core CPU (defaults): batch 16, one data worker, OMP_NUM_THREADS=1; the student takes ~52 min, the teacher
# several hours. The bundled teacher and student were trained on one H200 with
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 bash scripts/train_bundled.sh teacher   (3000 steps, 24 min)
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 bash scripts/train_bundled.sh distill   (2500 steps, 22 min)
# (BANK=400: only the first 400 utterances of the speech bank, copied there because espeak-ng is not installed;
#  point EDGE_SYNC_CACHE at the copied bank.)
# ARCH=int8: the INT8-friendly student (ReLU, no squeeze-excite), whose INT8 artifacts run faster than FP32 on
# onnxruntime; the bundled student is this one:
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 ARCH=int8 bash scripts/train_bundled.sh distill   (2500 steps, 11 min)
set -euo pipefail
cd "$(dirname "$0")/.."
E=.venv/bin/edge-sync
[ -x "$E" ] || E="python3 -m edge_sync.cli"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cfg=$(mktemp --suffix .json)
model_config='{}'
if [ "${ARCH:-}" = int8 ]; then
  model_config='{"video_trunk_kwargs": {"act": "relu", "se": false}, "audio_trunk_kwargs": {"act": "relu"}}'
fi
echo "{${BANK:+\"speech_bank\": $BANK, }\"checkpoint_every\": 250, \"model_config\": $model_config}" > "$cfg"
COMMON=(--batch-size "${BATCH:-16}" --frames 40 --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" --config "$cfg")
stage=${1:-}
case "$stage" in
  teacher)        $E train --model teacher --steps "${STEPS:-3000}" --lr 2e-3 --half "${COMMON[@]}" -o runs/teacher.pt ;;
  distill)        $E distill --teacher runs/teacher.pt --steps "${STEPS:-2500}" --lr 3e-3 --half "${COMMON[@]}" \
                    -o runs/student_distilled.pt ;;
  student-direct) $E train --model student --steps "${STEPS:-2500}" --lr 3e-3 "${COMMON[@]}" -o runs/student_direct.pt ;;
  bundle)
    student=${STUDENT:-runs/student_distilled.pt}
    $E eval --model runs/teacher.pt --model "$student" --count 200 --frames 50 --seed 1000 \
      --json runs/eval_holdout.json | tee runs/eval_holdout.md
    .venv/bin/python scripts/bundle_weights.py --teacher runs/teacher.pt --student "$student" --eval runs/eval_holdout.json
    ;;
  *) echo "usage: $0 teacher | distill | student-direct | bundle" >&2; exit 2 ;;
esac
