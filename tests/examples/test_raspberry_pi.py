"""examples/raspberry_pi end to end on x86, and (slow, opt-in) on an emulated arm64 Raspberry Pi.

The fast tests make a real ONNX INT8 artifact with `edge-sync export` and a real talking-face clip with a planted
offset, then run app.py as a user would: the offset is found within +-1 frame, equals Engine.sync_file, the output
has its documented shape, torch is never imported, and bad input gives a one-line error and exit code 1.
The slow test runs check_on_arm64.sh (Debian arm64 root under qemu-user-static, the README's install block, both
INT8 backends; 6-15 minutes here, depending on the cache and the load), which exits 1 unless the arm64 clip
offsets equal the x86 ones.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

ROOT = Path(__file__).resolve().parents[2]
PI = ROOT / "examples" / "raspberry_pi"
PLANTED = 5
SECOND_LINE = re.compile(r"^\[\s*\d+ s\] offset\s+[+-]\d+ frames \(\s*[+-]\d+ ms\)  p=\d\.\d\d  clip so far [+-]\d+"
                         r"(  \(\d+ frames? with the face\))?$")


def app(*args: str, code: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """app.py in a fresh interpreter; ``code`` runs instead of its __main__ (to look at sys.modules after)."""
    cmd = [sys.executable, str(PI / "app.py"), *map(str, args)] if code is None else [sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=PI)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny_calib_path) -> Path:
    """The README's PC step, for real: `edge-sync export --target onnx --precision int8`."""
    out = tmp_path_factory.mktemp("artifacts")
    done = subprocess.run([sys.executable, "-m", "edge_sync.cli", "export", "--target", "onnx", "--precision", "int8",
                           "--calib", str(tiny_calib_path), "-o", str(out)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "student.onnx-int8"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from edge_sync.data.talking_photo import make_talking_photo_clip

    return make_talking_photo_clip(tmp_path_factory.mktemp("clip") / "talk.mp4",
                                   "A small computer on the shelf listens and watches, and tells us when the sound "
                                   "slips behind the picture.", offset_frames=PLANTED, seed=11, voice="en-gb").path


def test_file_mode_finds_the_planted_offset_without_torch(artifact, clip, tmp_path):
    out_json, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = [str(artifact), "--video", str(clip), "--json", str(out_json)]
    if _has("matplotlib"):
        argv += ["--plot", str(png)]
    done = app(code=f"import sys; sys.path.insert(0, {str(PI)!r}); import app; rc = app.main({argv!r}); "
                    "assert 'torch' not in sys.modules, 'app.py imported torch'; sys.exit(rc)")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    seconds = [ln for ln in lines if ln.startswith("[")]
    assert len(seconds) >= 5 and all(SECOND_LINE.match(ln) for ln in seconds), seconds
    clip_line = next(ln for ln in lines if ln.startswith("clip offset:"))
    assert re.match(r"clip offset: [+-]\d+ frames \([+-]\d+ ms, sound late if \+; syncnet_python AV offset [+-]\d+\), "
                    r"confidence \d\.\d{3}, \d+ frames of face track \d+ from frame \d+$", clip_line), clip_line
    assert lines[-2].startswith("artifact:    student.onnx-int8 on onnxruntime")
    assert lines[-1].startswith("timing:      ") and "model windows of up to 121 frames" in lines[-1]

    result = json.loads(out_json.read_text())
    assert abs(result["offset_frames"] - PLANTED) <= 1, result
    assert f"clip offset: {result['offset_frames']:+d} frames" in clip_line
    assert result["audio_delay_ms"] == 40 * result["offset_frames"] and result["av_offset"] == -result["offset_frames"]
    assert result["backend"] == "onnxruntime" and result["timing"]["window_ms"]
    assert len(result["seconds"]) == len(seconds)
    if "--plot" in argv:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_file_mode_equals_engine_sync_file(artifact, clip, tmp_path):
    """The live loop (tracker -> crops -> stream, frame by frame) gives sync_file's clip result."""
    import edge_sync

    done = app(str(artifact), "--video", str(clip), "--json", str(tmp_path / "r.json"), "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [ln for ln in done.stdout.splitlines() if ln.startswith("[")], "--quiet still printed seconds"
    mine = json.loads((tmp_path / "r.json").read_text())
    sync = edge_sync.load(artifact).sync_file(clip)
    ref = sync.main
    assert mine["offset_frames"] == ref.result.offset_frames
    assert mine["track_frames"] == ref.result.frames and mine["start_frame"] == ref.start_frame
    assert mine["confidence"] == pytest.approx(ref.result.confidence, abs=1e-3)
    # the evidence null, read off the INT8 artifact's embeddings as sync_file reads it: the same verdict
    assert mine["evidence_ratio"] == pytest.approx(ref.evidence_ratio, rel=1e-2) and mine["evidence_ratio"] > 1.5
    assert mine["low_evidence"] is sync.low_evidence is False and mine["unsure_reason"] is None


def test_live_loop_does_not_care_whether_the_microphone_runs_ahead_or_behind(artifact, clip):
    """A microphone delivers in its own chunks, early or late against the camera: same frames, same numbers."""
    import numpy as np

    import edge_sync
    from edge_sync.features.media import iter_frames, read_audio

    sys.path.insert(0, str(PI))
    try:
        import app as pi_app
    finally:
        sys.path.remove(str(PI))
    engine = edge_sync.load(artifact)
    audio, frames = read_audio(clip), list(iter_frames(clip))
    chunks = np.array_split(audio, 397)  # ~40 ms mic blocks that do not line up with video frames

    def run(lag_frames: int) -> np.ndarray:
        live = pi_app.LiveSync(engine)
        given = samples = 0
        for i, frame in enumerate(frames):
            while given < len(chunks) and samples < (i - lag_frames) * 640:
                live.add_audio(chunks[given])
                samples += len(chunks[given])
                given += 1
            live.add_frame(frame)
        for c in chunks[given:]:
            live.add_audio(c)
        live.finish()
        track, start, result = live.result()
        return result.frame_probs

    in_step, behind, ahead = run(0), run(30), run(-30)
    assert in_step.shape[1] == len(frames)
    np.testing.assert_array_equal(behind, in_step)
    np.testing.assert_array_equal(ahead, in_step)


@pytest.mark.parametrize("case", ["missing artifact", "missing video", "not a video", "live without microphone"])
def test_bad_input_is_one_line_and_exit_1(case, artifact, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("this is not a video\n")
    args = {"missing artifact": (tmp_path / "nope.onnx-int8", "--video", junk),
            "missing video": (artifact, "--video", tmp_path / "nope.mp4"),
            "not a video": (artifact, "--video", junk),
            "live without microphone": (artifact, "--camera", "0", "--seconds", "1")}[case]
    if case == "live without microphone" and _has("sounddevice"):
        pytest.skip("sounddevice is installed here: its absence cannot be tested")
    done = app(*map(str, args), timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), done.stderr
    expect = {"missing artifact": "nope.onnx-int8", "missing video": "nope.mp4", "not a video": "junk.mp4",
              "live without microphone": "pip install sounddevice"}[case]
    assert expect in err[0], err[0]


def test_compare_offsets_exits_1_when_offsets_differ(tmp_path):
    base = {"backend": "onnxruntime", "offset_frames": 3, "confidence": 0.12, "track_frames": 251,
            "timing": {"window_ms": [10.0, 12.0], "window_frames": 121, "total_s": 1.0}}
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps({**base, "offset_frames": 4}))
    cmd = [sys.executable, str(PI / "compare_offsets.py"), str(tmp_path / "a.json")]
    same = subprocess.run([*cmd, str(tmp_path / "a.json"), "--planted", "3"], capture_output=True, text=True)
    differ = subprocess.run([*cmd, str(tmp_path / "b.json")], capture_output=True, text=True)
    assert same.returncode == 0 and "SAME" in same.stdout, same
    assert differ.returncode == 1 and "DIFFERENT" in differ.stdout, differ


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="debootstrap, chroot and mounts need root")
def test_check_on_arm64_end_to_end():
    """The whole emulated-Pi check (5.5-8 minutes with a cached arm64 root, 8-15 from scratch, on 2 shared cores)."""
    done = subprocess.run(["bash", str(PI / "check_on_arm64.sh")], capture_output=True, text=True, timeout=3600,
                          check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    results = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    assert results and all("| SAME |" in r for r in results), results
    assert "OK: arm64 clip offsets equal x86" in done.stdout


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
