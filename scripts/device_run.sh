#!/usr/bin/env bash
# On the lent GPU machine, from the repository root: unpack the kit that scripts/device_kit.sh built and the call
# carried (.gpu/), link in only the packages that machine's python lacks (its own numpy, torch, ... stay), point the
# speech cache at the carried bank, then run "$@" (e.g. DEVICE=cuda WORKERS=14 bash scripts/train_bundled.sh STAGE).
set -eo pipefail
kit=/tmp/edge-sync-kit site=/tmp/edge-sync-site
mkdir -p "$kit" "$site" /tmp/edge-sync-cache
for t in small cv2 av; do
  if [ -f ".gpu/$t.tar.xz" ]; then tar xJf ".gpu/$t.tar.xz" -C "$kit"; fi
done
for s in .gpu/speech*.tar.xz; do
  if [ -f "$s" ]; then tar xJf "$s" -C /tmp/edge-sync-cache; fi
done
for d in $(ls "$kit" | grep -v -e 'dist-info$' -e '\.libs$' -e '\.data$'); do
  if python3 -c "import $d" 2>/dev/null; then continue; fi
  echo "device_run: $d from the kit"
  ln -sfn "$kit/$d" "$site/$d"
  for info in "$kit/${d}"*.dist-info; do
    if [ -e "$info" ]; then ln -sfn "$info" "$site/"; fi
  done
done
for libs in "$kit"/*.libs; do  # the shared libraries that auditwheel bundled with a compiled package
  if [ -e "$libs" ]; then ln -sfn "$libs" "$site/"; fi
done
export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH} EDGE_SYNC_CACHE=/tmp/edge-sync-cache PYTHONUNBUFFERED=1
python3 -c "import torch, cv2, edge_sync; print('device_run: torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'| opencv', cv2.__version__)"
"$@"
