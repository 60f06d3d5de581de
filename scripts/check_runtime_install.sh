#!/usr/bin/env bash
# Device install check: a fresh venv with only `edge-sync[onnxruntime]` (no torch, no click) runs the CLI.
#
# Builds the wheel of the working tree (from a clean copy of the files git tracks or would track, so a stale build/
# cannot leak into it) and checks what it carries (the runtime artifacts, no torch checkpoints), installs it with
# only [onnxruntime] into a new venv in a temp dir, asserts torch is absent and the CLI does not import click, then
# runs --version, info --json, sync on a talking clip with a planted offset (the bundled FP32 artifact, then the
# bundled INT8 one by name; with OpenCV as pip resolves it: 5 has no
# Haar cascades, so there `--detector haar` must name the [haar] extra), bench on the bundled artifact (no
# torch: timed without baselines) and on an artifact no backend runs here (skipped, exit 0), and the errors a
# runtime-only install must give (usage error: exit 2; a command that needs torch: one line naming the extra,
# exit 1). Then adds a second runtime extra, [openvino], and checks it brings nothing export-only (nncf, scipy,
# scikit-learn, torch). Prints the time of each step and the sizes of the wheel and the venv.
#
# Needs: python3 with venv, pip access to the package index, and a python that can make the test clip with the
# project's demo code (DEV_PYTHON, default .venv/bin/python from scripts/setup.sh: scikit-image's photo,
# espeak-ng speech, PyAV encoding). KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DEV_PYTHON=${DEV_PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-sync-runtime.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then trap 'echo "kept $WORK"' EXIT; else trap 'rm -rf "$WORK"' EXIT; fi
V=$WORK/venv
ES=$V/bin/edge-sync
OFFSET=3

t0=$(date +%s.%N)
step_start=$t0
step() {  # print the time the previous step took, then the name of the next
  local now; now=$(date +%s.%N)
  [ -n "${STEP:-}" ] && printf 'runtime-install:   %-44s %6.1f s\n' "$STEP" "$(awk "BEGIN {print $now - $step_start}")"
  STEP=$1; step_start=$now
}
fail() { echo "runtime-install: FAIL: $*" >&2; exit 1; }
expect() {  # expect CODE NAME -- command...: run, keep stdout/stderr in $WORK/NAME.{out,err}, check the exit code
  local want=$1 name=$2; shift 3
  set +e; "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; local rc=$?; set -e
  if [ "$rc" != "$want" ]; then
    cat "$WORK/$name.out" "$WORK/$name.err" >&2
    fail "'${*#"$V/bin/"}' exited $rc, expected $want"
  fi
}
no_traceback() { ! grep -q Traceback "$WORK/$1.out" "$WORK/$1.err" || fail "$1 printed a traceback"; }

step "wheel: runtime artifact, no torch checkpoints"
mkdir -p "$WORK/src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
cd "$WORK"  # from here on, `python -c 'import edge_sync'` must find the installed package, not the checkout
"$PY" -m venv "$V"
"$V/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/wheel" "$WORK/src" \
  >"$WORK/wheel.log" 2>&1 || { cat "$WORK/wheel.log" >&2; fail "building the wheel failed"; }
WHEEL=$(ls "$WORK"/wheel/edge_sync-*.whl)
wheel_kb=$(( $(stat -c %s "$WHEEL") / 1024 ))
"$V/bin/python" - "$WHEEL" <<'EOF' || fail "the wheel carries the wrong files"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
pt = [n for n in names if n.endswith(".pt")]
assert not pt, f"torch checkpoints in the runtime wheel: {pt}"
for art in ("student.onnx-fp32", "student.onnx-int8"):  # the bundled artifacts (`--artifact student-int8`)
    for need in (f"edge_sync/weights/{art}/model.onnx", f"edge_sync/weights/{art}/manifest.json"):
        assert need in names, f"{need} missing from the wheel"
assert any(n.startswith("edge_sync/features/detectors/") and n.endswith(".onnx") for n in names), "no face detector"
for need in ("LICENSE", "NOTICE"):  # the vendored weights' licences travel with them
    assert any(n.endswith(f".dist-info/licenses/{need}") for n in names), f"{need} missing from the wheel"
EOF

step "venv + pip install edge-sync[onnxruntime]"
"$V/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[onnxruntime]" >"$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log" >&2; fail "pip install failed"; }

step "no torch, CLI without click"
"$V/bin/python" -c "import torch" 2>/dev/null && fail "torch is installed in the runtime-only venv"
click=$("$V/bin/python" -c "import click; print(click.__version__)" 2>/dev/null || echo "not installed")
"$V/bin/python" -c "import sys, edge_sync.cli; assert 'click' not in sys.modules, 'edge_sync.cli imported click'; \
assert edge_sync.cli.__file__.startswith('$V/'), edge_sync.cli.__file__" || fail "the installed CLI imports click"
size_mb=$(du -sm "$V" | cut -f1)

step "make the test clip (dev venv, demo code)"
[ -x "$DEV_PYTHON" ] || fail "no $DEV_PYTHON to make the test clip (run scripts/setup.sh, or set DEV_PYTHON)"
"$DEV_PYTHON" - "$WORK/clip.mp4" "$OFFSET" <<'EOF'
import sys
from edge_sync.data.talking_photo import make_talking_photo_clip
from edge_sync.demo import DEMO_TEXT
make_talking_photo_clip(sys.argv[1], DEMO_TEXT, offset_frames=int(sys.argv[2]))
EOF

step "edge-sync --version"
expect 0 version -- "$ES" --version
want="edge-sync $("$V/bin/python" -c 'import edge_sync; print(edge_sync.__version__)')"
[ "$(cat "$WORK/version.out")" = "$want" ] || fail "--version printed '$(cat "$WORK/version.out")', not '$want'"

step "edge-sync info --json"
expect 0 info -- "$ES" info --json
"$V/bin/python" - "$WORK/info.out" <<'EOF' || fail "info --json: wrong answer"
import json, sys
info = json.load(open(sys.argv[1]))
assert info["backends"]["torch"]["version"] is None, "info says torch is installed"
assert info["backends"]["onnxruntime"]["version"], "info does not see onnxruntime"
assert info["runtime_backends"]["onnxruntime"]["installed"], "onnxruntime backend not installed"
assert info["bundled_artifact"]["installed"] and not info["bundled_weights"], "bundled files: wrong set"
assert info["backends"]["nncf"]["for"] == "export", "nncf is not an export-only package"
EOF
expect 0 info_text -- "$ES" info
grep -q "to run artifacts (a device): pip install 'edge-sync\[onnxruntime\]'" "$WORK/info_text.out" \
  || fail "info does not recommend the runtime extra for running"

check_offset() {  # check_offset NAME: sync --json wrote $WORK/NAME.out; its offset must be the planted one +-1
  "$V/bin/python" - "$WORK/$1.out" "$OFFSET" "$1" <<'EOF' || fail "$1: wrong answer"
import json, sys
main = json.load(open(sys.argv[1]))  # the main face track's result, at the top level
found, planted = main["offset_frames"], int(sys.argv[2])
print(f"  {sys.argv[3]}: offset {found:+d} (planted {planted:+d}), confidence {main['confidence']:.3f}")
assert abs(found - planted) <= 1, f"detected {found:+d}, planted {planted:+d}"
EOF
}

step "edge-sync sync clip.mp4 (planted +$OFFSET)"
expect 0 sync -- "$ES" sync "$WORK/clip.mp4" --json
check_offset sync
expect 0 sync_text -- "$ES" sync "$WORK/clip.mp4"
grep -q "backend onnxruntime" "$WORK/sync_text.out" || fail "sync did not run on onnxruntime"

step "edge-sync sync --artifact student-int8 (bundled INT8)"
expect 0 sync_int8 -- "$ES" sync "$WORK/clip.mp4" --artifact student-int8 --json
check_offset sync_int8

step "OpenCV as pip resolved it; Haar without it"
opencv=$("$V/bin/python" -c "import cv2; print(cv2.__version__)")
if [ "${opencv%%.*}" -ge 5 ]; then  # OpenCV 5 has no cascades: YuNet ran the sync above; Haar names its extra
  expect 1 haar -- "$ES" sync "$WORK/clip.mp4" --detector haar
  no_traceback haar
  grep -q "pip install 'edge-sync\[haar\]'" "$WORK/haar.err" || fail "Haar on OpenCV $opencv does not name [haar]"
else
  expect 0 haar -- "$ES" sync "$WORK/clip.mp4" --detector haar
fi

step "edge-sync bench (bundled; coreml skipped)"
ART=$("$V/bin/python" -c "from edge_sync._paths import WEIGHTS_DIR; print(WEIGHTS_DIR / 'student.onnx-fp32')")
expect 0 bench -- "$ES" bench "$ART" --quick  # no torch: times the artifact, says the baselines need [export]
grep -q "| student.onnx-fp32 | onnx | fp32 | onnxruntime | 25 | 1 |.*| ok" "$WORK/bench.out" \
  || { cat "$WORK/bench.out" >&2; fail "bench has no ok row for the bundled artifact"; }
grep -q "pip install 'edge-sync\[export\]'" "$WORK/bench.err" || fail "bench does not say what the baselines need"
# the same artifact labelled CoreML: no backend predicts it off macOS, so it is skipped, and the run still passes
"$V/bin/python" - "$ART" "$WORK/student.coreml-fp32" <<'EOF'
import json, shutil, sys
shutil.copytree(sys.argv[1], sys.argv[2])
manifest = json.load(open(f"{sys.argv[2]}/manifest.json"))
manifest["target"] = "coreml"
json.dump(manifest, open(f"{sys.argv[2]}/manifest.json", "w"))
EOF
if [ "$(uname)" != Darwin ]; then
  expect 0 bench_skip -- "$ES" bench "$WORK/student.coreml-fp32" --quick --json
  "$V/bin/python" -c "import json, sys; rows = json.load(open(sys.argv[1]))['rows']; \
assert {r['status'] for r in rows} == {'skipped'}, rows" "$WORK/bench_skip.out" || fail "coreml is not skipped"
fi

step "errors: typo, bare, torch-only commands"
expect 2 typo -- "$ES" synk; no_traceback typo
grep -q "No such command 'synk'" "$WORK/typo.err" || fail "a typo does not say 'No such command'"
expect 2 bare -- "$ES"; no_traceback bare
grep -q "Usage: edge-sync" "$WORK/bare.out" "$WORK/bare.err" || fail "a bare edge-sync prints no help"
for cmd in "export" "bench $ART --baselines" "parity $ART" "train -o $WORK/x.pt"; do
  name=${cmd%% *}
  expect 1 "$name" -- "$ES" $cmd; no_traceback "$name"
  [ "$(wc -l <"$WORK/$name.err")" -eq 1 ] || { cat "$WORK/$name.err" >&2; fail "$name: not one line"; }
  grep -q "pip install 'edge-sync\[" "$WORK/$name.err" || fail "$name does not name the extra"
done

step "+ [openvino]: nothing export-only"
"$V/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[onnxruntime,openvino]" >"$WORK/pip2.log" 2>&1 \
  || { cat "$WORK/pip2.log" >&2; fail "pip install [openvino] failed"; }
"$V/bin/python" - <<'EOF' || fail "[openvino] brought export-only packages"
from importlib import metadata
present = []
for dist in ("nncf", "scipy", "scikit-learn", "torch", "onnx"):
    try:
        present.append(f"{dist} {metadata.version(dist)}")
    except metadata.PackageNotFoundError:
        pass
assert not present, f"installed by a runtime extra: {present}"
EOF
expect 0 info_ov -- "$ES" info --json
"$V/bin/python" -c "import json, sys; assert json.load(open(sys.argv[1]))['runtime_backends']['openvino']['installed']" \
  "$WORK/info_ov.out" || fail "info does not see the openvino backend"
size2_mb=$(du -sm "$V" | cut -f1)
step ""

printf 'runtime-install: OK in %.0f s (wheel %s KB; venv %s MB with [onnxruntime], %s MB with [onnxruntime,openvino];' \
  "$(awk "BEGIN {print $(date +%s.%N) - $t0}")" "$wheel_kb" "$size_mb" "$size2_mb"
printf ' no torch; click: %s; OpenCV %s)\n' "$click" "$opencv"
