#!/usr/bin/env bash
# Export every installed target in every precision from one calibration set, prove each artifact (parity) and time
# it (bench), then write the reports under docs/ (the docs link them; they come from this script only). The bench
# rows stay in docs/bench_cpu.json, so the plot can be redrawn without timing anything:
#   .venv/bin/python -c "from pathlib import Path; from edge_sync.bench.plot import plot; \
#     from edge_sync.bench.report import read_json; plot(read_json(Path('docs/bench_cpu.json')), Path('docs/bench_cpu.png'))"
#   bash scripts/matrix.sh            # full run (about 30-40 minutes on a 2-core CPU)
#   QUICK=1 bash scripts/matrix.sh    # smoke run: 20 parity clips, quick bench
set -euo pipefail
cd "$(dirname "$0")/.."
E=.venv/bin/edge-sync
OUT=${OUT:-out/matrix}
mkdir -p "$OUT"
[ -f "$OUT/calib/manifest.json" ] || $E calibrate --data synthetic --count 64 --frames 50 -o "$OUT/calib"
for precision in fp32 fp16 int8; do
  calib=(); [ "$precision" = int8 ] && calib=(--calib "$OUT/calib")  # export refuses --calib where it is not read
  $E export --model student --target all --precision "$precision" "${calib[@]}" -o "$OUT/artifacts" \
    | tee "$OUT/export-$precision.md"
done
count=100; bench_args=(--lengths 25,100,250 --batch 1,8 --repeat 10)
if [ -n "${QUICK:-}" ]; then count=20; bench_args=(--quick); fi
$E parity "$OUT"/artifacts/*/ --count "$count" -o "$OUT/parity.json" --report docs/parity_cpu.md || true
$E bench "$OUT"/artifacts/*/ "${bench_args[@]}" -o docs/bench_cpu.json --report docs/bench_cpu.md \
  --plot docs/bench_cpu.png --parity "$OUT/parity.json" || true  # clip accuracy in the plot from the parity run
