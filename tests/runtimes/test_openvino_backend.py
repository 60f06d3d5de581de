"""OpenVINO runtime backend: the Engine runs openvino artifacts at any T, concurrently, with the settings that
keep parity (f32 precision hint, thread count), numpy + openvino only, and refuses bad input clearly."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("openvino", reason="pip install 'edge-sync[openvino]'")

from edge_sync.artifact import ArtifactError, read_artifact  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.runtimes import openvino_backend as backend  # noqa: E402
from edge_sync.runtimes.registry import BACKENDS, BackendInfo  # noqa: E402
from tests.artifact_helpers import edited_copy, set_contract  # noqa: E402
from tests.exporters.helpers import onnx_exported_once  # noqa: E402

OPENVINO = BackendInfo("openvino", ("openvino",), "openvino", "openvino", 20,
                       "edge_sync.runtimes.openvino_backend:create")


@pytest.fixture(scope="module")
def student():
    pytest.importorskip("torch", reason="the reference outputs come from PyTorch")
    from edge_sync.models.io import load

    return load("student").eval()


@pytest.fixture(scope="module")
def artifact(student, tmp_path_factory):
    """The bundled student as an FP32 OpenVINO artifact. The ONNX export is shared with
    tests/exporters/test_openvino.py when both run in one session (it is the slow step)."""
    pytest.importorskip("nncf", reason="pip install 'edge-sync[openvino]'")
    pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")
    import edge_sync.exporters.openvino as ov_export

    cache = tmp_path_factory.getbasetemp() / f"openvino-{student.checkpoint_sha256[:12]}.onnx"
    with onnx_exported_once(ov_export, cache):
        return ov_export.export_openvino(student, tmp_path_factory.mktemp("art"), "fp32", name="student")


@pytest.fixture(scope="module")
def session(artifact):
    return backend.create(read_artifact(artifact), threads=2)


def _inputs(frames: int, seed: int = 0, batch: int = 1):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 10, (batch, 1, 13, 4 * frames)).astype(np.float32),
            rng.uniform(-1, 1, (batch, 3, frames, 112, 112)).astype(np.float32))


def _torch(model, audio, video):
    import torch

    with torch.inference_mode():
        return [x.numpy() for x in model(torch.from_numpy(audio), torch.from_numpy(video))]


def test_engine_picks_openvino_for_its_artifacts_and_matches_pytorch(artifact, student, monkeypatch):
    import edge_sync

    monkeypatch.setitem(BACKENDS, "openvino", OPENVINO)
    engine = edge_sync.load(artifact, threads=2)
    assert engine.backend == "openvino"
    audio, video = _inputs(37, seed=1)
    res = engine.run(audio, video)
    ref = _torch(student, audio, video)
    assert res.backend == "openvino" and res.frames == 37 and res.frame_probs.shape == (31, 37)
    assert np.abs(res.frame_probs - ref[0][0]).max() <= 1e-4
    assert np.abs(res.correlation - ref[1][0]).max() <= 1e-4


def test_windowed_long_clip_equals_one_pass(artifact, session, monkeypatch):
    """Windows of varying T through the same compiled model and pooled requests: dynamic T really works."""
    import edge_sync

    monkeypatch.setitem(BACKENDS, "openvino", OPENVINO)
    audio, video = _inputs(150, seed=2)
    windowed = edge_sync.load(artifact, backend="openvino", threads=2, window_frames=40).run(audio, video)
    probs, corr, audio_emb, video_emb = session.run(audio, video)  # the student's embeddings are exported too
    assert audio_emb.shape == video_emb.shape == (1, 64, 150)
    np.testing.assert_allclose(np.linalg.norm(video_emb, axis=1), 1.0, atol=1e-4)
    assert np.abs(windowed.frame_probs - probs[0]).max() <= 1e-5
    assert np.abs(windowed.correlation - corr[0]).max() <= 1e-5


def test_compiled_with_f32_precision_and_the_thread_count(artifact, session):
    import openvino as ov

    assert session.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32  # not bf16
    assert session.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    one = backend.create(read_artifact(artifact), threads=1)
    assert one.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert "INFERENCE_NUM_THREADS" not in backend.compile_config("fp32", None, ["FP32"])


@pytest.mark.parametrize("precision,caps,hint", [
    ("fp32", ["FP32", "BF16", "FP16"], "f32"), ("int8", ["FP32", "BF16", "INT8"], "f32"),
    ("fp16", ["FP32", "BF16"], "f32"), ("fp16", ["FP32", "FP16"], "f16")])
def test_precision_hint_is_never_bf16(precision, caps, hint):
    assert backend.inference_precision(precision, caps) == hint


def test_concurrent_calls_match_sequential_ones(session):
    """Several threads on one session: each call gets its own infer request, results equal single-threaded."""
    jobs = [_inputs(t, seed=t) for t in (20, 33, 47, 20, 61, 33, 47, 61)]
    expected = [session.run(a, v) for a, v in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda job: session.run(*job), jobs))
    for (p, c, *_), (ep, ec, *_) in zip(got, expected):
        assert p.shape == ep.shape and np.abs(p - ep).max() <= 1e-6 and np.abs(c - ec).max() <= 1e-6


def test_outputs_are_owned_copies(session):
    """A result must not change when the pooled request runs again (outputs are copied out of its buffers)."""
    first = session.run(*_inputs(25, seed=5))[0]
    kept = first.copy()
    session.run(*_inputs(25, seed=6))
    assert np.array_equal(first, kept)


def test_backend_runs_without_torch(artifact):
    code = ("import sys, numpy as np\n"
            "from edge_sync.artifact import read_artifact\n"
            "from edge_sync.runtimes.openvino_backend import create\n"
            f"s = create(read_artifact({str(artifact)!r}), 1)\n"
            "p = s.run(np.zeros((1, 1, 13, 40), np.float32), np.zeros((1, 3, 10, 112, 112), np.float32))[0]\n"
            "assert p.shape == (1, 31, 10), p.shape\n"
            "assert 'torch' not in sys.modules, 'the openvino backend imported torch'\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_bad_input_and_wrong_artifact_are_refused(artifact, session):
    audio, video = _inputs(20)
    with pytest.raises(EdgeSyncError, match="audio \\[B,1,13,4T\\]"):
        session.run(audio[..., :50], video)  # audio is not 4*T long
    onnx_like = read_artifact(artifact)
    onnx_like = type(onnx_like)(onnx_like.path, {**onnx_like.manifest, "target": "onnx"})
    with pytest.raises(ArtifactError, match="not openvino"):
        backend.create(onnx_like, None)


def test_a_contract_the_model_does_not_have_is_refused(artifact, session, tmp_path):
    import edge_sync

    assert session.io_shapes()["sync_probs"] == (None, 31, None)
    bad = edited_copy(tmp_path / "a", set_contract("max_offset", 10), src=artifact)
    with pytest.raises(ArtifactError, match=r"contract.max_offset = 10 means sync_probs \[B, 21, T\], but the "
                                            r"model's sync_probs is \[\?, 31, \?\]"):
        edge_sync.load(bad, backend="openvino")
