"""examples/jetson end to end, as far as a machine without TensorRT goes (none here has it: DESIGN.md).

One real `edge-sync export --target tensorrt --precision fp16` per module; then: the ONNX TensorRT would parse
passes the static check against onnx-tensorrt's operator table and runs on onnxruntime within the FP16 parity
tolerance of the FP32 graph; the scripts' arguments, and their one-line failure without TensorRT; run_engine.py
and camera_loop.py run for real on onnxruntime (the same model.onnx), the camera loop on a talking-face clip
standing in for camera and microphone, finding its planted offset and matching Engine.sync_file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")

import edge_sync  # noqa: E402
from edge_sync._deps import available  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
JETSON = ROOT / "examples" / "jetson"
NO_TRT = pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed: its absence cannot be tested")
PLANTED = -4


def script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JETSON / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """The README's first step, for real: the TensorRT-ready FP16 artifact of the bundled student."""
    out = tmp_path_factory.mktemp("artifacts")
    done = subprocess.run([sys.executable, "-m", "edge_sync.cli", "export", "--model", "student", "--target",
                           "tensorrt", "--precision", "fp16", "-o", str(out)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    path = out / "student.tensorrt-fp16"
    assert {"model.onnx", "build_engine.py", "manifest.json"} <= {p.name for p in path.iterdir()}
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edge_sync.data.talking_photo import make_talking_photo_clip

    return make_talking_photo_clip(tmp_path_factory.mktemp("clip") / "talk.mp4",
                                   "Please check that the sound and the lips agree.", offset_frames=PLANTED, seed=8)


@pytest.fixture(scope="module")
def faceless(tmp_path_factory) -> Path:
    """Four seconds of a grey wall with a tone: decodes fine, has no face."""
    from edge_sync.data.talking_photo import write_video

    t = np.arange(64_000) / 16_000
    return write_video(tmp_path_factory.mktemp("faceless") / "wall.mp4", np.full((100, 180, 320, 3), 128, np.uint8),
                       (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))


# --- the ONNX the device consumes ---------------------------------------------------------------------------
def test_the_exported_graph_passes_the_static_tensorrt_check(artifact):
    from edge_sync.exporters.tensorrt import trtexec_line
    from edge_sync.exporters.tensorrt_check import ShapeRange, check_graph
    from edge_sync.runtimes.contract_check import contract_from_manifest

    manifest = json.loads((artifact / "manifest.json").read_text())
    profile = {k: ShapeRange.from_any(v) for k, v in manifest["tensorrt"]["profile"].items()}
    report = check_graph(artifact / "model.onnx", contract_from_manifest(manifest), profile)
    assert report.ok and not report.errors, report.summary()
    assert manifest["tensorrt_check"]["ok"] and manifest["tensorrt_check"]["errors"] == 0
    assert manifest["trtexec"] == trtexec_line(profile) and "--stronglyTyped" in manifest["trtexec"]
    # the build script the README runs on the device plans exactly the manifest's profile
    done = subprocess.run([sys.executable, str(artifact / "build_engine.py"), "--dry-run"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["profile"] == manifest["tensorrt"]["profile"]


def test_the_same_graph_runs_on_onnxruntime_within_fp16_tolerance(artifact, clip):
    """The FP16 graph TensorRT will build, on onnxruntime, against the bundled FP32 ONNX of the same student:
    elements within the FP16 parity tolerance on random inputs, per-frame offsets on the real clip."""
    from edge_sync.features.clip import prepare_clip
    from edge_sync.parity import TOLERANCES
    from edge_sync.parity.harness import failing_fraction
    from edge_sync.spec import example_inputs

    engine = edge_sync.load(artifact, backend="onnxruntime")
    reference = edge_sync.load()
    assert engine.backend == "onnxruntime" and engine.manifest["target"] == "tensorrt"
    tol = TOLERANCES["fp16"]
    for frames, seed in ((37, 1), (160, 2)):  # neither is the export sample's length
        audio, video = example_inputs(engine.contract, frames, seed=seed)
        out, ref = engine.run(audio, video), reference.run(audio, video)
        assert failing_fraction(out.frame_probs, ref.frame_probs, tol) <= tol.max_fail_fraction
        assert failing_fraction(out.correlation, ref.correlation, tol) <= tol.max_fail_fraction
    segment = prepare_clip(clip.path).main_segment()
    out, ref = engine.run_segment(segment), reference.run_segment(segment)
    # on one ~100-frame clip the parity set's 99.5% means no flip at all; a frame may flip only where FP32 itself is
    # undecided (its two most likely offsets within twice FP16's absolute tolerance of each other)
    flipped = out.frame_offsets != ref.frame_offsets
    top2 = np.sort(ref.frame_probs, axis=0)[-2:]
    gap = top2[1] - top2[0]
    assert np.mean(~flipped) >= tol.min_frame_agreement or (flipped.sum() <= 1 and np.all(gap[flipped] < 2 * tol.atol))
    assert out.offset_frames == ref.offset_frames and abs(out.offset_frames - PLANTED) <= 1


# --- the scripts ---------------------------------------------------------------------------------------------
@NO_TRT
@pytest.mark.parametrize("name", ["run_engine.py", "camera_loop.py"])
def test_scripts_without_tensorrt_say_what_to_install_in_one_line(artifact, clip, name):
    done = script(name, artifact, "--video", clip.path)  # default backend: tensorrt
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith(f"{name}: error: the TensorRT backend cannot start")
    for hint in ("JetPack", "--system-site-packages", "pip install 'edge-sync[tensorrt]'", "--backend onnxruntime"):
        assert hint in line


@NO_TRT
def test_build_engine_without_tensorrt_points_at_the_device(artifact):
    done = subprocess.run([sys.executable, str(artifact / "build_engine.py")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "TensorRT's Python package is not importable" in done.stderr and "JetPack" in done.stderr
    assert not (artifact / "model.plan").exists()


@pytest.mark.parametrize("name, args, code, message", [
    ("run_engine.py", ["--help"], 0, "Time an edge-sync TensorRT engine"),
    ("run_engine.py", ["{artifact}", "--runs", "0"], 2, "need --frames >= 1, --runs >= 1"),
    ("run_engine.py", ["{artifact}", "--backend", "cuda"], 2, "invalid choice: 'cuda'"),
    ("run_engine.py", ["{artifact}", "--video", "missing.mp4"], 2, "--video missing.mp4: no such file"),
    ("run_engine.py", ["/nonexistent/student.tensorrt-fp16"], 1, "is not an artifact directory"),
    ("run_engine.py", ["{artifact}", "--backend", "onnxruntime", "--runs", "1", "--video", "{faceless}"], 1,
     "no face track"),
    ("camera_loop.py", ["--help"], 0, "Live audio/video offset"),
    ("camera_loop.py", ["{artifact}", "--hop", "0"], 2, "need --hop >= 1"),
    ("camera_loop.py", ["{artifact}", "--camera", "1", "--video", "x.mp4"], 2, "not allowed with argument"),
    ("camera_loop.py", ["{artifact}", "--backend", "onnxruntime", "--camera", "/dev/video9", "--mic-command",
                        "sleep 30"], 1, "OpenCV cannot open camera /dev/video9"),
    ("camera_loop.py", ["{artifact}", "--backend", "onnxruntime", "--mic-command", "no-such-recorder -r 16000"], 1,
     "no-such-recorder not found: install alsa-utils (arecord) or pass --mic-command"),
    ("camera_loop.py", ["{artifact}", "--backend", "onnxruntime", "--video", "{faceless}"], 1,
     "no face followed for 5+ consecutive frames in 100 frames"),
])
def test_argument_handling_and_clear_failures(artifact, faceless, name, args, code, message):
    done = script(name, *(a.format(artifact=artifact, faceless=faceless) for a in args))
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in (done.stdout if code == 0 else done.stderr)
    assert "Traceback" not in done.stderr
    if code == 1:  # failures after parsing: exactly one line, no traceback
        assert done.stderr.strip().splitlines()[-1].startswith(f"{name}: error: ")


def test_run_engine_times_the_graph_and_syncs_the_clip(artifact, clip):
    done = script("run_engine.py", artifact, "--backend", "onnxruntime", "--frames", "50", "--runs", "5",
                  "--warmup", "1", "--video", clip.path, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    lat = out["latency"]
    assert out["backend"] == "onnxruntime" and out["precision"] == "fp16"
    assert lat["frames"] == 50 and lat["runs"] == 5 and 0 < lat["median_ms"] <= lat["p90_ms"]
    assert abs(out["clip"]["offset_frames"] - PLANTED) <= 1, out["clip"]


def test_camera_loop_on_a_video_file_finds_the_planted_offset(artifact, clip):
    done = script("camera_loop.py", artifact, "--backend", "onnxruntime", "--video", clip.path, "--json",
                  "--every", "25")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert abs(out["offset_frames"] - PLANTED) <= 1, out
    assert out["frames_read"] == clip.frames and out["segments"] == 1 and out["backend"] == "onnxruntime"
    assert f"frame {25 * (clip.frames // 25):5d}" in done.stderr  # status lines go to stderr with --json
    # the stream over cv2's frames and the soundtrack equals the SDK's own file pipeline on the same file, up to the
    # colour conversion (VideoCapture converts with swscale, the SDK's decoder 4:2:0 frames with OpenCV's I420
    # conversion: pixels differ by a few levels). Confidence is compared relative to its size: the real-face student
    # of session 10 is ~3x more confident than the one before, and those pixels move it by ~5% (0.154 vs 0.147)
    sync = edge_sync.load(artifact, backend="onnxruntime").sync_file(clip.path)
    offline = sync.main.result
    assert out["offset_frames"] == offline.offset_frames and out["num_frames"] == offline.frames
    assert out["confidence"] == pytest.approx(offline.confidence, rel=0.1)
    # the evidence null, read off the artifact's embedding outputs live as sync_file reads it: the same verdict
    assert out["evidence_ratio"] == pytest.approx(sync.evidence_ratio, rel=0.15) and out["evidence_ratio"] > 1.5
    assert out["low_evidence"] is sync.low_evidence is False and out["unsure_reason"] is None


def test_the_microphone_pipe_reads_a_capture_command(clip, monkeypatch):
    """PipeMic with ffmpeg standing in for arecord: the same samples as the file's soundtrack."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    from edge_sync.features.media import read_audio

    monkeypatch.syspath_prepend(str(JETSON))
    import camera_loop

    mic = camera_loop.PipeMic(["ffmpeg", "-loglevel", "error", "-i", str(clip.path), "-ac", "1", "-ar", "16000",
                               "-f", "s16le", "-"])
    mic.reader.join(timeout=60)  # the command ends with the file; its output is then all read
    samples = mic.read(0)
    mic.close()
    ref = read_audio(clip.path)
    n = min(len(samples), len(ref))
    assert abs(len(samples) - len(ref)) <= 2 * camera_loop.SPF
    assert np.corrcoef(samples[:n], ref[:n])[0, 1] > 0.99


@pytest.mark.parametrize("fps_in", [30, 15])
def test_camera_frames_are_resampled_to_25_fps(tmp_path, monkeypatch, fps_in):
    """A 30 fps source loses every sixth frame, a 15 fps one repeats frames; order is kept (real cv2 capture of a
    real file whose frame i is a flat grey of level 8 i)."""
    import cv2

    from edge_sync.data.talking_photo import write_video

    monkeypatch.syspath_prepend(str(JETSON))
    import camera_loop

    frames = np.stack([np.full((64, 64, 3), 8 * i, np.uint8) for i in range(fps_in)])  # one second
    cap = cv2.VideoCapture(str(write_video(tmp_path / "src.mp4", frames, None, fps=fps_in)))
    levels = [int(round(f.mean() / 8)) for f in camera_loop.frames_at_25fps(cap, live=False)]
    cap.release()
    # ticks up to the last frame's time + 20 ms: 0..24 after a 30 fps frame at 967 ms, 0..23 after 15 fps at 933 ms
    assert len(levels) == {30: 25, 15: 24}[fps_in] and levels[0] == 0 and levels[-1] == fps_in - 1
    steps = np.diff(levels)
    assert set(steps.tolist()) <= ({1, 2} if fps_in > 25 else {0, 1})
