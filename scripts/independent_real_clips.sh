#!/usr/bin/env bash
# Rebuild the independent real-clip folder (scripts/independent_real_clips.tsv) from git checkouts of its source
# repositories, each file read at the commit the table pins, and write the folder's MANIFEST.tsv (the table's columns
# file..license). The clips are third-party footage and stay outside the project repository.
#   git clone https://github.com/OWNER/NAME ROOT/OWNER/NAME     (one per repository the table names)
#   bash scripts/independent_real_clips.sh ROOT ../independent_clips
#   edge-sync eval --data ../independent_clips --clips scripts/independent_in_sync.txt --model ...
# ROOT may also hold bare mirrors as ROOT/OWNER+NAME/repo or ROOT/OWNER+NAME.
set -euo pipefail
root=${1:?usage: $0 CHECKOUTS_ROOT OUT_DIR}
out=${2:?usage: $0 CHECKOUTS_ROOT OUT_DIR}
table="$(dirname "$0")/independent_real_clips.tsv"
git_dir_of() {  # git_dir_of OWNER/NAME -> a path git can read objects from
  local c
  for c in "$root/$1" "$root/${1/\//+}/repo" "$root/${1/\//+}"; do
    [ -d "$c" ] && git -C "$c" rev-parse --git-dir >/dev/null 2>&1 && { echo "$c"; return; }
  done
  echo "$0: no checkout of $1 under $root (git clone https://github.com/$1 $root/$1)" >&2
  return 1
}
mkdir -p "$out"
trap 'rm -f "$out"/.*.part' EXIT
grep -v '^#' "$table" | head -1 | cut -f1-10 > "$out/MANIFEST.tsv"
n=0
while IFS= read -r line; do  # whole lines: an empty column must not shift the others
  file=$(cut -f1 <<< "$line")
  repo=$(cut -f3 <<< "$line")
  path=$(cut -f4 <<< "$line")
  src=${path% @*}
  commit=${path##*@}
  dir=$(git_dir_of "$repo")
  tmp="$out/.$file.part"
  git -C "$dir" show "$commit:$src" > "$tmp"  # fails loudly when the pinned commit is not in the checkout
  if head -c 100 "$tmp" | grep -q '^version https://git-lfs'; then
    echo "$0: $repo $src is a Git LFS pointer in that checkout; fetch the LFS object first" >&2
    exit 1
  fi
  mv "$tmp" "$out/$file"
  cut -f1-10 <<< "$line" >> "$out/MANIFEST.tsv"
  n=$((n + 1))
done < <(grep -v '^#' "$table" | tail -n +2)
echo "$n clips in $out"
