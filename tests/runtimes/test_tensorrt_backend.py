"""TensorRT backend: clear errors without an engine or without TensorRT; the session's control flow (shapes,
profile limits, buffers, copies, stale-engine checks) against a stand-in engine and device; the real engine
where TensorRT exists (skipped here: no machine of this project has TensorRT)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_sync._deps import available
from edge_sync.artifact import read_artifact, sha256_file, write_artifact
from edge_sync.errors import EdgeSyncError, MissingExtraError
from edge_sync.runtimes import tensorrt_backend as backend

WEIGHTS = Path(__file__).resolve().parents[2] / "edge_sync" / "weights"
BUNDLED = WEIGHTS / "student.onnx-fp32"
HAS_TRT = available("tensorrt")
NEEDS_TRT = pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed")


def tensorrt_artifact(out: Path, plan: bytes | None = None, info: dict | None = None) -> Path:
    """A tensorrt-target artifact around the bundled student ONNX (optionally with an engine and its record)."""
    manifest = json.loads((BUNDLED / "manifest.json").read_text())
    keep = {k: manifest[k] for k in ("contract", "time_range", "source")}

    def files(tmp: Path) -> dict:
        shutil.copyfile(BUNDLED / "model.onnx", tmp / "model.onnx")
        (tmp / "build_engine.py").write_text("# stand-in\n")
        entry = {"model": "model.onnx", "build_script": "build_engine.py"}
        if plan is not None:
            (tmp / "model.plan").write_bytes(plan)
            entry["engine"] = "model.plan"
        if info is not None:
            (tmp / "model.plan.json").write_text(json.dumps(info))
        return {"entry": entry, "trtexec": "trtexec --onnx=model.onnx --saveEngine=model.plan ..."}

    return write_artifact(out, "student", "tensorrt", "fp32", files, keep)


# --- stand-ins for TensorRT and CUDA -------------------------------------------------------------------
class FakeDevice:
    """Host memory behind integer 'device pointers'."""

    stream = 7

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self.mallocs = 0

    def malloc(self, nbytes: int) -> int:
        self.mallocs += 1
        ptr = 4096 * self.mallocs
        self.memory[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        self.memory[ptr][:host.nbytes] = host.tobytes()

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        host[...] = np.frombuffer(bytes(self.memory[ptr][:host.nbytes]), host.dtype).reshape(host.shape)

    def synchronize(self) -> None:
        pass


class FakeContext:
    """Computes outputs from the input buffers: sync_probs = mean of audio, correlation = video frame means."""

    def __init__(self, device: FakeDevice, names: tuple[str, ...]) -> None:
        self.device, self.names, self.shapes, self.addresses = device, names, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        b, _, t = self.shapes["video"][:3]
        return (b, 4, t) if name.endswith("_emb") else (b, 31, t)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream):
        assert stream == FakeDevice.stream
        if set(self.addresses) != set(self.names):  # as TensorRT: every input and output needs its address
            return False
        read = {n: np.frombuffer(bytes(self.device.memory[self.addresses[n]]), np.float32)[:int(np.prod(s))]
                .reshape(s) for n, s in self.shapes.items()}
        b, _, t = self.get_tensor_shape("sync_probs")
        probs = np.full((b, 31, t), read["audio"].mean(), np.float32)
        corr = np.broadcast_to(read["video"].mean(axis=(1, 3, 4))[:, None, :], (b, 31, t)).astype(np.float32)
        embeddings = {name: np.full((b, 4, t), i + 1.0, np.float32) for i, name in enumerate(("audio_emb", "video_emb"))}
        for name, value in (("sync_probs", probs), ("correlation", corr), *embeddings.items()):
            if name in self.addresses:
                self.device.memory[self.addresses[name]][:value.nbytes] = value.tobytes()
        return True


class FakeEngine:
    def __init__(self, device, names=("audio", "video", "sync_probs", "correlation"), frames=(1, 100, 300)):
        self.device, self.names, self.frames = device, names, frames
        self.num_io_tensors = len(names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 3, f, 112, 112) for f in self.frames]

    def get_tensor_dtype(self, name):
        return "float32"

    def create_execution_context(self):
        return FakeContext(self.device, self.names)


class FakeLogger:
    WARNING = 2

    def __init__(self, level: int) -> None:
        self.level = level


def fake_trt(engine, version="10.15.1") -> SimpleNamespace:
    """The module-level names of TensorRT that the backend uses."""
    runtime = SimpleNamespace(deserialize_cuda_engine=lambda plan: engine)
    return SimpleNamespace(__version__=version, Logger=FakeLogger, Runtime=lambda logger: runtime, nptype=np.dtype)


def session(engine=None, device=None, embeddings=False):
    device = device or FakeDevice()
    engine = engine or FakeEngine(device)
    return backend.TensorRTSession(fake_trt(engine), b"plan", device, embeddings=embeddings), device


def clip(frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, 1, 13, 4 * frames)).astype(np.float32),
            rng.standard_normal((1, 3, frames, 112, 112)).astype(np.float32))


# --- without an engine or without TensorRT ---------------------------------------------------------------
def test_missing_engine_says_how_to_build_it(tmp_path):
    art = read_artifact(tensorrt_artifact(tmp_path))
    with pytest.raises(EdgeSyncError, match=r"build the engine on the device with build_engine.py \(see manifest "
                                            r"trtexec\)"):
        backend.create(art, None)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: its absence cannot be tested")
def test_missing_tensorrt_names_the_extra(tmp_path):
    art = read_artifact(tensorrt_artifact(tmp_path, plan=b"not-an-engine"))
    with pytest.raises(MissingExtraError, match=r"edge-sync\[tensorrt\]"):
        backend.create(art, None)


def test_registry_runs_tensorrt_artifacts_on_tensorrt_first_and_onnxruntime_on_cpu(tmp_path):
    """Needs the registry lines (registry.py): tensorrt backend, and onnxruntime listing the tensorrt target."""
    from edge_sync.runtimes.registry import BACKENDS

    info = BACKENDS["tensorrt"]
    assert info.targets == ("tensorrt",) and info.module == "tensorrt" and info.extra == "tensorrt"
    assert info.preference < BACKENDS["onnxruntime"].preference
    assert info.factory == "edge_sync.runtimes.tensorrt_backend:create"
    assert "tensorrt" in BACKENDS["onnxruntime"].targets
    if not HAS_TRT and available("onnxruntime"):
        from edge_sync.runtimes import load

        engine = load(tensorrt_artifact(tmp_path))
        result = engine.run(*clip(30))
        assert engine.backend == "onnxruntime" and result.frames == 30


# --- the session's control flow, against stand-ins --------------------------------------------------------
def test_run_copies_inputs_in_and_outputs_out():
    sess, _ = session()
    audio, video = clip(40)
    probs, corr = sess.run(audio, video)
    assert probs.shape == corr.shape == (1, 31, 40) and probs.dtype == corr.dtype == np.float32
    assert np.allclose(probs, audio.mean(), atol=1e-6)
    assert np.allclose(corr[0, 5], video.mean(axis=(1, 3, 4))[0], atol=1e-6)


EMBEDDING_ENGINE = ("audio", "video", "sync_probs", "correlation", "audio_emb", "video_emb")


def test_every_engine_output_is_bound_and_the_embeddings_returned_where_declared():
    """An engine built from a graph with the embedding outputs runs only with all of them bound: a session for an
    artifact that declares them returns all four, one that does not still binds them and returns two."""
    device = FakeDevice()
    four, _ = session(FakeEngine(device, names=EMBEDDING_ENGINE), device, embeddings=True)
    probs, corr, audio_emb, video_emb = four.run(*clip(12))
    assert probs.shape == (1, 31, 12) and audio_emb.shape == video_emb.shape == (1, 4, 12)
    assert (audio_emb == 1.0).all() and (video_emb == 2.0).all()
    two, _ = session(FakeEngine(device, names=EMBEDDING_ENGINE), device, embeddings=False)
    assert len(two.run(*clip(12))) == 2
    with pytest.raises(EdgeSyncError, match="no tensor.*audio_emb"):  # declared, but the engine lacks them
        session(FakeEngine(device), device, embeddings=True)


def test_buffers_grow_for_longer_clips_and_are_reused_for_shorter():
    sess, device = session()
    sess.run(*clip(50))
    first = device.mallocs
    sess.run(*clip(20, seed=1))
    assert device.mallocs == first
    probs, _ = sess.run(*clip(120, seed=2))
    assert device.mallocs == first + 4 and probs.shape == (1, 31, 120)
    sess.close()
    assert not device.memory


def test_clip_outside_the_profile_is_refused_with_the_fix():
    sess, _ = session()
    with pytest.raises(EdgeSyncError, match=r"outside the engine's profile \(1\.\.300 frames\).*--max-frames 301"):
        sess.run(*clip(301))
    audio, video = clip(10)
    with pytest.raises(EdgeSyncError, match="batch 2 is outside"):
        sess.run(np.concatenate([audio, audio]), np.concatenate([video, video]))


def test_engine_without_the_contract_tensors_is_refused():
    device = FakeDevice()
    with pytest.raises(EdgeSyncError, match="no tensor.*correlation"):
        session(FakeEngine(device, names=("audio", "video", "sync_probs")), device)


def test_engine_that_does_not_deserialize_is_refused():
    trt = fake_trt(None)
    with pytest.raises(EdgeSyncError, match="GPU model and TensorRT version that built them"):
        backend.TensorRTSession(trt, b"garbage", FakeDevice())


def test_create_checks_the_engine_record_then_runs(tmp_path, monkeypatch):
    sha = sha256_file(BUNDLED / "model.onnx")
    device = FakeDevice()
    # the bundled student's graph has the embedding outputs and its manifest declares them
    monkeypatch.setattr(backend, "require", lambda *a, **k: fake_trt(FakeEngine(device, names=EMBEDDING_ENGINE)))
    good = read_artifact(tensorrt_artifact(tmp_path / "good", b"plan", {"onnx_sha256": sha,
                                                                         "tensorrt": "10.15.1"}))
    probs, *_, video_emb = backend.create(good, None, device=device).run(*clip(10))
    assert probs.shape == (1, 31, 10) and video_emb.shape == (1, 4, 10)
    stale = read_artifact(tensorrt_artifact(tmp_path / "stale", b"plan", {"onnx_sha256": "0" * 64}))
    with pytest.raises(EdgeSyncError, match="different model.onnx"):
        backend.create(stale, None, device=device)
    moved = read_artifact(tensorrt_artifact(tmp_path / "moved", b"plan", {"tensorrt": "10.3.0"}))
    with pytest.raises(EdgeSyncError, match="built with TensorRT 10.3.0, this is 10.15.1"):
        backend.create(moved, None, device=device)


def test_cuda_python_errors_become_engine_errors():
    ok, bad = "ok", "bad"
    rt = SimpleNamespace(cudaError_t=SimpleNamespace(cudaSuccess=ok), cudaStreamCreate=lambda: (ok, 11),
                         cudaMalloc=lambda n: (bad,), cudaGetErrorName=lambda e: (ok, b"cudaErrorMemoryAllocation"))
    device = backend.CudaPythonDevice(rt)
    assert device.stream == 11
    with pytest.raises(EdgeSyncError, match="cudaErrorMemoryAllocation"):
        device.malloc(1024)


def test_backend_module_never_imports_torch():
    code = ("import sys, edge_sync.runtimes.tensorrt_backend; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0


# --- the real thing, where TensorRT exists ------------------------------------------------------------------
@NEEDS_TRT
def test_real_engine_matches_onnxruntime(tmp_path):
    import onnxruntime as ort

    pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")
    import edge_sync.exporters.tensorrt as trt_exporter
    from edge_sync.models.io import load

    path = trt_exporter.export_tensorrt(load("student"), tmp_path, "fp32", name="student", build_engine=False)
    done = subprocess.run([sys.executable, str(path / "build_engine.py"), "--max-frames", "200"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"TensorRT is installed but could not build here: {done.stderr[-300:]}")
    sess = backend.create(read_artifact(path, verify=False), None)
    audio, video = clip(60)
    ref = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"audio": audio, "video": video})
    outputs = sess.run(audio, video)  # sync_probs, correlation, audio_emb, video_emb, as onnxruntime orders them
    assert len(outputs) == len(ref) == 4
    assert all(np.abs(o - r).max() < 1e-3 for o, r in zip(outputs, ref))


def test_missing_tensorrt_on_a_jetson_points_to_jetpack_not_pip(tmp_path):
    from edge_sync.runtimes.registry import BACKENDS, on_jetson, tensorrt_install_hint

    assert not on_jetson(tmp_path) and tensorrt_install_hint(tmp_path) is None
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert on_jetson(tmp_path) and "JetPack" in tensorrt_install_hint(tmp_path)
    (tmp_path / "proc/device-tree/model").unlink()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.0\n")
    assert on_jetson(tmp_path)
    hint = tensorrt_install_hint(tmp_path)
    err = MissingExtraError("tensorrt", "tensorrt", "the tensorrt backend", hint)
    assert "python3-libnvinfer" in str(err) and "pip install" not in str(err) and err.extra == "tensorrt"
    # the registry's own error uses the hint where there is one and pip's line elsewhere
    info = BACKENDS["tensorrt"]
    assert info.install_hint is tensorrt_install_hint
    if not on_jetson():
        assert "pip install 'edge-sync[tensorrt]'" in str(info.missing("x"))
