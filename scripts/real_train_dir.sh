#!/usr/bin/env bash
# A temporary folder of links to the real training clips of a real-clip folder (its MANIFEST.tsv's `real` rows not in
# scripts/real_holdout.txt), plus EXTRA folders' clips, with a MANIFEST.tsv of the offsets that realign them; prints
# its path. One place for train_bundled.sh's real stages (and its tests). Usage: bash scripts/real_train_dir.sh DIR
#   REALIGN=1        the shared clips measured late or early as published (scripts/real_published_offsets.tsv)
#   SUSPECTS=1       the `real-suspect` clips the real-face teacher reads clearly off, realigned by that reading
#                    (scripts/real_suspect_offsets.tsv: pseudo-labels, more faces to learn from)
#   EXTRA=DIR[:DIR]  more clips (scripts/extra_real_clips.sh): a folder's MANIFEST.tsv `real` rows (else every video),
#                    realigned by its offset_frames column where it has one (e.g. the offsets a teacher reads)
#   EXTRA_PSEUDO=0   leave out the EXTRA rows that carry an offset_frames (the pseudo-labelled ones): the bundled
#                    student's folder (session 24 trained on StyleTalk's clean clips only)
set -euo pipefail
real=$(realpath "${1:?usage: $0 DIR}")
extras=()  # resolved here, before the cd: the caller's relative paths
for extra in ${EXTRA:+${EXTRA//:/ }}; do extras+=("$(realpath "$extra")"); done
cd "$(dirname "$0")/.."
d=$(mktemp -d)
offsets="$d/.offsets"  # file<TAB>frames rows of every source below; the MANIFEST.tsv at the end, where there are any
: > "$offsets"
bash scripts/real_training_clips.sh "$real" | while read -r f; do ln -s "$real/$f" "$d/$f"; done
# REALIGN=1: the clips measured late or early as published are realigned (scripts/real_published_offsets.tsv;
# docs/real_footage.md). Off by default, so the stages reproduce the bundled weights, which were trained without it
if [ -n "${REALIGN:-}" ]; then grep -v '^#' scripts/real_published_offsets.tsv | tail -n +2 >> "$offsets"; fi
if [ -n "${SUSPECTS:-}" ]; then
  grep -v '^#' scripts/real_suspect_offsets.tsv | tail -n +2 | while IFS=$'\t' read -r f offset; do
    [ -e "$real/$f" ] || { echo "$0: SUSPECTS=1 but $real has no $f" >&2; exit 1; }
    ln -s "$real/$f" "$d/$f" && printf '%s\t%s\n' "$f" "$offset" >> "$offsets"
  done
fi
for extra in ${extras[@]+"${extras[@]}"}; do
  if [ -f "$extra/MANIFEST.tsv" ]; then  # its `real` rows, with their offset_frames where the column is there
    awk -F'\t' -v pseudo="${EXTRA_PSEUDO:-1}" '
      FNR == 1 { for (i = 1; i <= NF; i++) if ($i == "offset_frames") c = i; next }
      $2 == "real" && !(pseudo == "0" && c && $c != "") { print $1 "\t" (c ? $c : "") }' "$extra/MANIFEST.tsv"
  else
    find "$extra" -maxdepth 1 -type f \( -name '*.mp4' -o -name '*.mpg' -o -name '*.avi' -o -name '*.mov' \) \
      -printf "%f\t\n"
  fi | while IFS=$'\t' read -r f offset; do
    ln -s "$extra/$f" "$d/$f"
    if [ -n "$offset" ]; then printf '%s\t%s\n' "$f" "$offset" >> "$offsets"; fi
  done
done
if [ -s "$offsets" ]; then { printf 'file\toffset_frames\n'; cat "$offsets"; } > "$d/MANIFEST.tsv"; fi
rm "$offsets"
echo "$d"
