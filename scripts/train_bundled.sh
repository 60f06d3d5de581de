#!/usr/bin/env bash
# Reproduce the bundled weights with the repo's own recipe, on this 2-core CPU (or pass DEVICE=cuda).
#   bash scripts/train_bundled.sh student-direct   # the student trained directly on synthetic clips (~1 h here)
#   bash scripts/train_bundled.sh teacher          # the SyncNetFCN teacher
#   bash scripts/train_bundled.sh distill          # the student distilled from runs/teacher.pt
#   bash scripts/train_bundled.sh bundle           # evaluate on the hold-out set and copy into edge_sync/weights/
# Every stage is resumable: rerun the same line after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
E=.venv/bin/edge-sync
DEVICE=${DEVICE:-auto}
# two cores: one for the data worker, one for the model; more threads only fight over them
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON=(--batch-size 16 --frames 40 --workers "${WORKERS:-1}" --device "$DEVICE")
stage=${1:-student-direct}
case "$stage" in
  student-direct) $E train --model student --steps "${STEPS:-2500}" --lr 3e-3 "${COMMON[@]}" -o runs/student_direct.pt ;;
  teacher)        $E train --model teacher --steps "${STEPS:-3000}" --lr 2e-3 "${COMMON[@]}" -o runs/teacher.pt ;;
  distill)        $E distill --teacher runs/teacher.pt --steps "${STEPS:-2500}" --lr 3e-3 "${COMMON[@]}" -o runs/student.pt ;;
  bundle)
    student=${STUDENT:-runs/student_direct.pt}
    models=("$student"); [ -f runs/teacher.pt ] && models+=(runs/teacher.pt)
    args=(); for m in "${models[@]}"; do args+=(--model "$m"); done
    $E eval "${args[@]}" --count 200 --frames 50 --seed 1000 --json runs/eval_holdout.json | tee runs/eval_holdout.md
    mkdir -p edge_sync/weights
    # bundled copies are stored in float16 (a few MB in git); loading casts back to float32
    .venv/bin/python - "$student" <<'PY'
import sys
from pathlib import Path
from edge_sync.models.io import load, save_checkpoint
pairs = [(sys.argv[1], "edge_sync/weights/student.pt")]
if Path("runs/teacher.pt").is_file():
    pairs.append(("runs/teacher.pt", "edge_sync/weights/teacher.pt"))
for src, dst in pairs:
    model = load(src)
    save_checkpoint(model, dst, meta={**model.checkpoint_meta, "bundled_from": src}, half=True)
PY
    .venv/bin/python scripts/describe_weights.py runs/eval_holdout.json
    ;;
  *) echo "unknown stage $stage (student-direct | teacher | distill | bundle)" >&2; exit 2 ;;
esac
