#!/usr/bin/env bash
# Names of the real training clips of a real-clip folder: its MANIFEST.tsv's `real` rows not in scripts/real_holdout.txt.
# One list for train_bundled.sh (real_train_dir) and device_kit.sh. Usage: bash scripts/real_training_clips.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
awk -F'\t' 'NR == FNR { if ($0 !~ /^#/ && NF) hold[$1] = 1; next }
             FNR > 1 && $2 == "real" && !($1 in hold) { print $1 }' scripts/real_holdout.txt "${1:?usage: $0 DIR}/MANIFEST.tsv"
