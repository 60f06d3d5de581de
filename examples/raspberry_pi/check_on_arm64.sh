#!/usr/bin/env bash
# Prove examples/raspberry_pi on an emulated Raspberry Pi: a Debian bookworm arm64 root (what 64-bit Raspberry Pi OS
# is built on) under qemu-user-static, where the README's own install block runs with aarch64 wheels from PyPI
# (no torch), then app.py runs on a sample clip with a planted offset. The clip offset must equal the x86 one for
# every backend, else this exits 1. Each phase's wall time is printed at the end.
#
#   sudo bash examples/raspberry_pi/check_on_arm64.sh            # from the repo root, after scripts/setup.sh
#
# Environment: QEMU_CPU=cortex-a72 (Pi 4, default) or cortex-a76 (Pi 5); BACKENDS="onnxruntime litert";
# ARM64_ROOT (cached Debian root, default ~/.cache/edge-sync/arm64-root; delete it to start from scratch);
# WORK (default /tmp/edge-sync-arm64-check); OFFSET (planted offset, default 3).
# Needs root (debootstrap, chroot, mounts) and network to deb.debian.org and PyPI.
# Emulated speed is ~100x below a real Pi: its timings prove the pipeline runs, never how fast a Pi is.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${ARM64_ROOT:-$HOME/.cache/edge-sync/arm64-root}
WORK=${WORK:-/tmp/edge-sync-arm64-check}
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
BACKENDS=${BACKENDS:-onnxruntime litert}
OFFSET=${OFFSET:-3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PY=$REPO/.venv/bin/python
ES=$REPO/.venv/bin/edge-sync
PI_HOME=/root  # the chroot's user home: stands in for /home/pi
declare -A ARTIFACT=([onnxruntime]=student.onnx-int8 [litert]=student.tflite-int8)

die() { echo "check_on_arm64: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts): run it with sudo"
[ -x "$PY" ] || die "no $PY: run bash scripts/setup.sh first (the host side exports the artifacts)"
case "$QEMU_CPU" in cortex-a72|cortex-a76) ;; *) die "QEMU_CPU must be cortex-a72 (Pi 4) or cortex-a76 (Pi 5)";; esac

PHASES=()
phase_start() { PHASE=$1; T0=$(date +%s.%N); echo; echo "=== $PHASE"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%7.1f", b - a }'; }
phase_end() { PHASES+=("$(printf '%-44s %s s' "$PHASE" "$(since "$T0")")"); }
CHECK_START=$(date +%s.%N)

MOUNTS=()
cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || echo "could not unmount ${MOUNTS[i]}" >&2
  done
  MOUNTS=()
}
trap cleanup EXIT
# a run killed before its trap could leave /proc, /sys, /dev mounted in the root: unmount them first (never delete
# through them)
awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
trap 'exit 130' INT TERM
mnt() { mount "$@"; MOUNTS+=("${*: -1}"); }

# Run a command inside the arm64 root with a clean environment (the host's venv, PIP_* settings and paths must not
# leak in); QEMU_CPU reaches every emulated process through the environment. PIP_CERT: the host's CA bundle, copied
# in below, because this host reaches PyPI through a TLS-inspecting proxy (a real Pi needs nothing of the sort).
in_root() {
  env -i HOME=$PI_HOME PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    TERM=dumb DEBIAN_FRONTEND=noninteractive QEMU_CPU="$QEMU_CPU" PIP_CERT=/etc/ssl/certs/host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 chroot "$ROOT" /bin/bash -euo pipefail -c "$1"
}

# --- 1. host tools -----------------------------------------------------------------------------------------------
phase_start "host tools (debootstrap, qemu-user-static)"
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null; then
  apt-get update -qq && apt-get install -y -qq debootstrap qemu-user-static binfmt-support >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
  || die "qemu-aarch64 is registered without the F (fix-binary) flag; reinstall Debian's qemu-user-static"
echo "$(qemu-aarch64-static --version | head -1); binfmt: $(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64)"
phase_end

# --- 2. host side: what a PC does before copying to the Pi ----------------------------------------------------------
phase_start "host: wheel, INT8 artifacts, sample clip"
[ ! -e "$WORK" ] || [ -f "$WORK/.edge-sync-arm64-check" ] || die "$WORK exists and is not this script's work dir"
rm -rf "$WORK" && mkdir -p "$WORK/pi" "$WORK/artifacts" && touch "$WORK/.edge-sync-arm64-check"
# build from a copy: setuptools' build/ in the checkout could carry stale modules into the wheel
mkdir -p "$WORK/src" && cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/edge_sync" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$REPO/.venv/bin/pip" wheel --no-deps --no-build-isolation -w "$WORK/pi" "$WORK/src" >"$WORK/wheel.log" 2>&1 \
  || { tail -20 "$WORK/wheel.log"; die "building the edge-sync wheel failed"; }
ls "$WORK"/pi/edge_sync-*.whl
# the commands the README gives for the PC (tflite: one 121-frame bucket = 25 new frames + 2 x 48 of context)
"$ES" export --target onnx --precision int8 -o "$WORK/artifacts" 2>"$WORK/export_onnx.log" | grep "| onnx | int8 |" \
  || { tail -20 "$WORK/export_onnx.log"; die "ONNX INT8 export failed"; }
if [[ " $BACKENDS " == *" litert "* ]]; then
  "$ES" export --target tflite --precision int8 --buckets 121 -o "$WORK/artifacts" 2>"$WORK/export_tflite.log" \
    | grep "| tflite | int8 |" || { tail -20 "$WORK/export_tflite.log"; die "LiteRT INT8 export failed"; }
fi
"$ES" demo --workdir "$WORK/clip" --offset "$OFFSET" 2>"$WORK/demo.log" | tail -3
CLIP=talking_offset$(printf '%+d' "$OFFSET").mp4
cp -r "$HERE/app.py" "$WORK/clip/$CLIP" "$WORK"/artifacts/* "$WORK/pi/"
phase_end

phase_start "host: app.py on x86"
for b in $BACKENDS; do
  "$PY" "$HERE/app.py" "$WORK/pi/${ARTIFACT[$b]}" --video "$WORK/pi/$CLIP" --json "$WORK/x86_$b.json" --quiet 2>&1 \
    | grep -v "^INFO: Created TensorFlow Lite XNNPACK"
done
phase_end

# --- 3. the emulated Pi ---------------------------------------------------------------------------------------------
phase_start "arm64 root: debootstrap bookworm (cached)"
if [ -f "$ROOT/.edge-sync-base-ok" ]; then
  echo "reusing $ROOT ($(du -sh "$ROOT" | cut -f1)); delete it to start from scratch"
else
  [ ! -e "$ROOT" ] || [ -f "$ROOT/.edge-sync-partial" ] || [ -z "$(ls -A "$ROOT")" ] \
    || die "$ROOT exists and is not a root this script started; remove it or set ARM64_ROOT"
  rm -rf --one-file-system "$ROOT" && mkdir -p "$ROOT" && touch "$ROOT/.edge-sync-partial"
  debootstrap --arch=arm64 --foreign --variant=minbase bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap1.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap1.log"; die "debootstrap (first stage) failed"; }
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin QEMU_CPU="$QEMU_CPU" chroot "$ROOT" /debootstrap/debootstrap --second-stage \
    >"$WORK/debootstrap2.log" 2>&1 || { tail -20 "$WORK/debootstrap2.log"; die "debootstrap (second stage) failed"; }
  echo "deb $MIRROR bookworm main" >"$ROOT/etc/apt/sources.list"
  rm "$ROOT/.edge-sync-partial" && touch "$ROOT/.edge-sync-base-ok"
  echo "made $ROOT ($(du -sh "$ROOT" | cut -f1))"
fi
phase_end

phase_start "arm64 root: mounts, cpuinfo, copy files"
# onnxruntime reads /proc/cpuinfo and /sys at import and segfaults on the host's x86 cpuinfo: show it an arm64
# one for the emulated core (one entry per host core, since emulated threads run on host cores)
case "$QEMU_CPU" in
  cortex-a72) FEATURES="fp asimd evtstrm crc32 cpuid"; PART=0xd08; VARIANT=0x0; REV=3;;
  cortex-a76) FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
              PART=0xd0b; VARIANT=0x4; REV=1;;
esac
for ((i = 0; i < $(nproc); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\n' "$i" "$FEATURES"
  printf 'CPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$VARIANT" "$PART" "$REV"
done >"$WORK/cpuinfo"
mnt -t proc proc "$ROOT/proc"
mnt -t sysfs sys "$ROOT/sys"
mnt --bind /dev "$ROOT/dev"
mnt --bind "$WORK/cpuinfo" "$ROOT/proc/cpuinfo"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca.crt" 2>/dev/null \
  || { mkdir -p "$ROOT/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca.crt"; }
rm -rf "$ROOT$PI_HOME/edge-sync" && mkdir -p "$ROOT$PI_HOME" && cp -r "$WORK/pi" "$ROOT$PI_HOME/edge-sync"
echo "inside: $(in_root 'uname -m; head -2 /proc/cpuinfo | tail -1' | tr '\n' ' ')"
phase_end

# --- 4. the README's install block, as written, on the emulated Pi ------------------------------------------------
phase_start "arm64: README install block (apt + pip)"
INSTALL=$(awk '/<!-- pi-install:start -->/{on=1; next} /<!-- pi-install:end -->/{on=0} on && !/^```/' "$HERE/README.md")
[ -n "$INSTALL" ] || die "no <!-- pi-install:start --> block in $HERE/README.md"
[ "$BACKENDS" = onnxruntime ] || INSTALL=${INSTALL//\[onnxruntime\]/[onnxruntime,litert]}  # the check runs both
echo "$INSTALL" | sed 's/^/  pi$ /'
in_root "sudo() { \"\$@\"; }; rm -rf ~/edge-sync-venv; cd ~; $INSTALL" >"$WORK/install.log" 2>&1 \
  || { tail -30 "$WORK/install.log"; die "the README's install block failed on arm64 (log: $WORK/install.log)"; }
grep -E "^Successfully installed" "$WORK/install.log" | tr ' ' '\n' | grep -E "^(edge-sync|numpy|av|opencv|onnxruntime|ai-edge)" \
  | tr '\n' ' ' && echo
in_root '~/edge-sync-venv/bin/python - <<EOF
import importlib.util, platform, ctypes
hw = ctypes.CDLL(None).getauxval(16)  # AT_HWCAP of the emulated core
print("python", platform.python_version(), platform.machine(), "| emulated", "'"$QEMU_CPU"':",
      "atomics", int(bool(hw & 1 << 8)), "dotprod", int(bool(hw & 1 << 20)), "sve", int(bool(hw & 1 << 22)))
assert importlib.util.find_spec("torch") is None, "torch got installed: the runtime install must not pull it"
print("torch: not installed (as intended)")
EOF'
phase_end

# --- 5. run the example on the emulated Pi and compare with x86 --------------------------------------------------
FAIL=0
: >"$WORK/results.txt"
for b in $BACKENDS; do
  phase_start "arm64: app.py, $b (emulated $QEMU_CPU)"
  in_root "cd ~/edge-sync && ~/edge-sync-venv/bin/python app.py ${ARTIFACT[$b]} --video $CLIP --json arm64_$b.json" \
    2>&1 | grep -v "^INFO: Created TensorFlow Lite XNNPACK" || true
  [ -f "$ROOT$PI_HOME/edge-sync/arm64_$b.json" ] || die "app.py failed on arm64 ($b)"
  cp "$ROOT$PI_HOME/edge-sync/arm64_$b.json" "$WORK/arm64_$b.json"
  phase_end
  "$PY" "$HERE/compare_offsets.py" "$WORK/x86_$b.json" "$WORK/arm64_$b.json" --planted "$OFFSET" \
    | tee -a "$WORK/results.txt" || FAIL=1
done

echo
echo "=== phase timings (wall; emulated = QEMU user mode on $(nproc) x86 cores, NOT Raspberry Pi speed)"
printf '%s\n' "${PHASES[@]}"
printf '%-44s %s s\n' "total" "$(since "$CHECK_START")"
grep "^RESULT" "$WORK/results.txt" || true
[ "$FAIL" = 0 ] && echo "OK: arm64 clip offsets equal x86" || { echo "FAILED: see above"; exit 1; }
