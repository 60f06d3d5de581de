"""The numpy-only runtime: load an artifact, run it, sync a real file, refuse bad input clearly."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

import edge_sync  # noqa: E402
from edge_sync.artifact import ArtifactError  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.runtimes.result import SyncResult, distance_curve  # noqa: E402


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")
    from edge_sync.exporters.api import export
    from edge_sync.models.io import save_checkpoint
    from edge_sync.models.student import X3DStudent
    from tests.models.helpers import randomise_batchnorm

    ckpt = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_checkpoint(randomise_batchnorm(X3DStudent()), ckpt)
    return export(ckpt, "onnx", "fp32", tmp_path_factory.mktemp("art"))[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image")
    from edge_sync.data.talking_photo import make_talking_photo_clip

    return make_talking_photo_clip(tmp_path_factory.mktemp("clip") / "talk.mp4", "Runtime test clip.", 2)


def _inputs(frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 10, (1, 1, 13, 4 * frames)).astype(np.float32),
            rng.uniform(-1, 1, (1, 3, frames, 112, 112)).astype(np.float32))


def test_engine_runs_and_reports(artifact):
    engine = edge_sync.load(artifact)
    assert engine.backend == "onnxruntime" and engine.manifest["target"] == "onnx"
    res = engine.run(*_inputs(30))
    assert res.frame_probs.shape == (31, 30) and res.frames == 30 and res.backend == "onnxruntime"
    assert res.av_offset == -res.offset_frames and res.audio_delay_ms == 40 * res.offset_frames
    assert set(res.to_dict())  >= {"offset_frames", "audio_delay_ms", "av_offset", "confidence", "backend", "frames"}


def test_result_from_known_outputs():
    """A correlation peaked at k = +3 gives offset +3, legacy AV offset -3, confidence = median - min."""
    frames = 20
    corr = np.zeros((31, frames), np.float32)
    corr[15 + 3] = 0.9
    probs = np.full((31, frames), 0.01, np.float32)
    probs[15 + 3] = 0.7
    res = SyncResult.from_outputs(probs / probs.sum(0), corr)
    assert res.offset_frames == 3 and res.av_offset == -3 and res.audio_delay_ms == 120
    curve = distance_curve(corr)
    assert res.min_dist == pytest.approx(np.sqrt(2 - 1.8)) and res.confidence == pytest.approx(np.median(curve) - curve.min())


def test_clip_offset_follows_the_distance_curve_and_ties_follow_the_head():
    """syncnet_python's rule: the clip offset is the distance curve's minimum even where the head's frame-averaged
    distribution peaks elsewhere; its probability is the head's for that offset; a flat curve defers to the head."""
    frames = 20
    corr = np.zeros((31, frames), np.float32)
    corr[15 - 4] = 0.8
    probs = np.full((31, frames), 0.01, np.float32)
    probs[15 + 6] = 0.5
    probs /= probs.sum(0)
    res = SyncResult.from_outputs(probs, corr)
    assert res.offset_frames == -4 and res.probability == pytest.approx(float(probs[15 - 4].mean()))
    flat = SyncResult.from_outputs(probs, np.zeros_like(corr))
    assert flat.offset_frames == 6


@pytest.mark.parametrize("make, message", [
    (lambda a, v: (a.astype(np.float64), v), "float32"),
    (lambda a, v: (a, v[:, :, :, :100]), "video must be"),
    (lambda a, v: (a[..., :-4], v), "steps but video has"),
    (lambda a, v: (np.where(np.arange(a.shape[-1]) == 3, np.nan, a).astype(np.float32), v), "NaN"),
    (lambda a, v: (np.concatenate([a, a]), np.concatenate([v, v])), "batch 1"),
])
def test_bad_inputs_are_refused_clearly(artifact, make, message):
    engine = edge_sync.load(artifact)
    with pytest.raises((ValueError, TypeError), match=message):
        engine.run(*make(*_inputs(10)))


def test_bundled_artifacts_load_by_name_and_a_path_of_that_name_wins(artifact, tmp_path, monkeypatch):
    """`--artifact student-int8` names a bundled artifact; a folder of that name where the user stands is theirs."""
    from edge_sync import _paths

    monkeypatch.setattr(_paths, "WEIGHTS_DIR", artifact.parent)
    monkeypatch.setitem(_paths.BUNDLED_ARTIFACTS, "mine", artifact.name)
    monkeypatch.chdir(tmp_path)
    assert _paths.artifact_path("mine") == artifact and _paths.artifact_path(None) == _paths.BUNDLED_ARTIFACT
    assert edge_sync.load("mine").manifest == edge_sync.load(artifact).manifest
    (tmp_path / "mine").mkdir()
    assert _paths.artifact_path("mine") == Path("mine")
    with pytest.raises(ArtifactError, match="^mine has no manifest.json"):
        edge_sync.load("mine")  # the user's own (empty) folder, not the bundled one
    (tmp_path / "mine").rmdir()
    (tmp_path / "mine").write_text("a file of that name")  # the user's file wins too, and is refused as theirs
    with pytest.raises(ArtifactError) as refused:
        edge_sync.load("mine")
    assert "no bundled artifact" not in str(refused.value)
    monkeypatch.setitem(_paths.BUNDLED_ARTIFACTS, "gone", "student.onnx-missing")
    with pytest.raises(ArtifactError, match="no bundled artifact at .*student.onnx-missing in this install"):
        edge_sync.load("gone")


def test_unknown_or_unfit_backend(artifact):
    with pytest.raises(EdgeSyncError, match="unknown backend"):
        edge_sync.load(artifact, backend="tensorflow")


def test_corrupted_artifact_is_refused(artifact, tmp_path):
    import shutil

    copy = tmp_path / artifact.name
    shutil.copytree(artifact, copy)
    (copy / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(ArtifactError, match="sha256"):
        edge_sync.load(copy)
    with pytest.raises(ArtifactError, match="not an artifact directory"):
        edge_sync.load(tmp_path / "nothing")


def test_threads_give_the_same_results_as_sequential_calls(artifact):
    engine = edge_sync.load(artifact)
    inputs = [_inputs(12 + i, seed=i) for i in range(6)]
    sequential = [engine.run(*x).frame_probs for x in inputs]
    results: dict[int, np.ndarray] = {}

    def work(i):
        results[i] = engine.run(*inputs[i]).frame_probs

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for i in range(6):
        np.testing.assert_array_equal(results[i], sequential[i])


def test_sync_file_end_to_end_without_torch(artifact, clip):
    """`import edge_sync.runtimes` and a whole sync_file run with torch made unimportable."""
    code = (
        "import sys, json; sys.modules['torch'] = None\n"
        "import edge_sync.runtimes as rt\n"
        f"res = rt.load({str(artifact)!r}).sync_file({str(clip.path)!r})\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(json.dumps(res.to_dict(per_frame=False)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["backend"] == "onnxruntime" and data["video_frames"] >= clip.frames - 1
    assert data["tracks"] and data["num_frames"] >= clip.frames - 10


def test_cli_sync_json(artifact, clip):
    out = subprocess.run([sys.executable, "-m", "edge_sync.cli", "sync", str(clip.path), "--artifact", str(artifact),
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    for key in ("offset_frames", "audio_delay_ms", "av_offset", "confidence", "backend", "frames"):
        assert key in data
    assert len(data["frames"]) == data["num_frames"]


def test_cli_sync_errors_are_one_line(tmp_path, artifact):
    (tmp_path / "empty.mp4").write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "edge_sync.cli", "sync", str(tmp_path / "empty.mp4"), "--artifact",
                          str(artifact)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "empty" in out.stderr


@pytest.mark.parametrize("window", [40, 100])
def test_long_clips_in_windows_equal_a_single_pass(artifact, window):
    """Windowed inference (bounded memory) must give the single-pass result, not an approximation."""
    audio, video = _inputs(230, seed=9)
    single = edge_sync.load(artifact, window_frames=10_000).run(audio, video)
    windowed = edge_sync.load(artifact, window_frames=window).run(audio, video)
    np.testing.assert_allclose(windowed.frame_probs, single.frame_probs, atol=1e-5)
    np.testing.assert_allclose(windowed.correlation, single.correlation, atol=1e-5)
    assert windowed.offset_frames == single.offset_frames


def test_too_little_context_would_differ(artifact):
    """The equality above is not vacuous: without enough overlap the windows disagree with a single pass."""
    audio, video = _inputs(230, seed=9)
    single = edge_sync.load(artifact, window_frames=10_000).run(audio, video)
    engine = edge_sync.load(artifact, window_frames=40)
    engine.context_frames = 2
    assert np.abs(engine.run(audio, video).frame_probs - single.frame_probs).max() > 1e-3
