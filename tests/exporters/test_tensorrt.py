"""TensorRT export: a checked TensorRT-ready ONNX per precision, a build script for the device, a trtexec line
and ONNX parity in the manifest. No TensorRT exists here, so the build script is run for its arguments and its
failure message, and once against a stand-in `tensorrt` module to walk its build path (not TensorRT itself)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")
import onnx
from onnx import TensorProto, helper, numpy_helper

import edge_sync.exporters.tensorrt as trt_exporter  # registers the target
from edge_sync._deps import available
from edge_sync.artifact import read_artifact
from edge_sync.errors import EdgeSyncError
from edge_sync.exporters import get_exporter
from edge_sync.exporters.common import DEFAULT_MAX_FRAMES, TimeRange
from edge_sync.exporters.tensorrt_check import TensorRTCompatError
from edge_sync.models.io import load

BUNDLED_ONNX = Path(__file__).resolve().parents[2] / "edge_sync" / "weights" / "student.onnx-fp32" / "model.onnx"
TRTEXEC = ("trtexec --onnx=model.onnx --saveEngine=model.plan "
           "--minShapes=audio:1x1x13x4,video:1x3x1x112x112 --optShapes=audio:1x1x13x400,video:1x3x100x112x112 "
           "--maxShapes=audio:1x1x13x4000,video:1x3x1000x112x112 --stronglyTyped")
NO_TRT = pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed: its absence cannot be tested")


@pytest.fixture(scope="module")
def student():
    return load("student")


@pytest.fixture(scope="module")
def cached_onnx():
    """Skip torch.onnx in all but one test: the bundled student's FP32 ONNX is that same model's export."""
    def copy(model, path, frames=25):
        shutil.copyfile(BUNDLED_ONNX, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trt_exporter.onnx_exporter, "export_onnx_file", copy)
        yield


@pytest.fixture(scope="module")
def fp32(student, tmp_path_factory):
    """The one real export (torch -> ONNX) of this file."""
    return trt_exporter.export_tensorrt(student, tmp_path_factory.mktemp("fp32"), "fp32", name="student",
                                        source={"model": "student"})


@pytest.fixture(scope="module")
def fp16(student, cached_onnx, tmp_path_factory):
    return trt_exporter.export_tensorrt(student, tmp_path_factory.mktemp("fp16"), "fp16", name="student")


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    from edge_sync.calibration import load_calibration_set, write_calibration_set

    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((3, 1, 13, 40)) * 10).astype(np.float32)
    crops = rng.integers(0, 256, (3, 10, 112, 112, 3), dtype=np.uint8)
    return load_calibration_set(write_calibration_set(tmp_path_factory.mktemp("calib") / "set", audio, crops,
                                                      {"kind": "random"}))


def run_script(script: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


def test_registered_with_its_precisions():
    info = get_exporter("tensorrt")
    assert info.precisions == ("fp32", "fp16", "int8") and info.extra == "export" and info.available()


def test_fp32_artifact_layout_and_manifest(fp32):
    art = read_artifact(fp32)
    m = art.manifest
    assert fp32.name == "student.tensorrt-fp32" and set(m["files"]) == {"model.onnx", "build_engine.py"}
    assert m["entry"] == {"model": "model.onnx", "build_script": "build_engine.py"}
    assert m["trtexec"] == TRTEXEC and m["engine"].startswith("build on the target device")
    assert m["tensorrt_check"]["ok"] and m["tensorrt_check"]["errors"] == 0 and m["opset"] == 20
    assert m["time_range"] == {"min_frames": 1, "opt_frames": 100, "max_frames": 1000, "dynamic": True}
    assert m["tensorrt"]["profile"]["audio"]["max"] == [1, 1, 13, 4000]
    assert m["tensorrt"]["engine_build"]["built"] is False or available("tensorrt")
    assert m["runs_on"] == ["tensorrt (build on device)", "onnxruntime"] and "onnxruntime" in m["tools"]
    assert m["parity_quick"]["max_abs_err"]["sync_probs"] <= 1e-4 and m["parity_quick"]["frames"] == [7, 25, 100]


def test_fp32_onnx_keeps_time_dynamic_beyond_the_export_sample(fp32, student):
    import onnxruntime as ort
    import torch

    from edge_sync.exporters.onnx import sample_inputs

    audio, video = sample_inputs(student, 250, seed=3)
    sess = ort.InferenceSession(str(fp32 / "model.onnx"), providers=["CPUExecutionProvider"])
    probs, _, audio_emb, video_emb = sess.run(None, {"audio": audio.numpy(), "video": video.numpy()})
    with torch.inference_mode():
        ref = student(audio, video)
        ref_emb = student.embed(audio, video)
    assert probs.shape == (1, 31, 250) and np.abs(probs - ref[0].numpy()).max() <= 1e-4
    # the embedding outputs the runtime reads the evidence null from (edge_sync.models.embeddings)
    assert read_artifact(fp32).manifest["contract"]["embeddings"] is True
    assert np.abs(audio_emb - ref_emb[0].numpy()).max() <= 1e-4 and np.abs(video_emb - ref_emb[1].numpy()).max() <= 1e-4


def test_fp16_is_a_typed_graph_with_float32_io(fp16):
    m = read_artifact(fp16).manifest
    graph = onnx.load(str(fp16 / "model.onnx")).graph
    assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in list(graph.input) + list(graph.output))
    assert any(init.data_type == TensorProto.FLOAT16 for init in graph.initializer)
    assert m["precision"] == "fp16" and m["tensorrt_check"]["ok"] and "--fp16" not in m["trtexec"]
    assert m["parity_quick"]["frame_offset_agreement"] >= 0.95


def test_int8_is_symmetric_qdq_with_float_biases(student, cached_onnx, calib, tmp_path):
    path = trt_exporter.export_tensorrt(student, tmp_path, "int8", name="student", calib=calib)
    m = read_artifact(path).manifest
    model = onnx.load(str(path / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and m["tensorrt_check"]["ok"]
    for node in qdq:
        zp = inits[node.input[2]]
        assert zp.data_type == TensorProto.INT8 and not numpy_helper.to_array(zp).any()
        if node.input[0] in inits:
            assert inits[node.input[0]].data_type == TensorProto.INT8  # no INT32 bias dequantization left
    assert m["quantization"]["activations"] == "int8 symmetric" and m["calibration"]["id"] == calib.id
    assert m["trtexec"] == TRTEXEC and 0.0 <= m["parity_quick"]["frame_offset_agreement"] <= 1.0


def test_time_range_sets_profile_trtexec_and_parity_lengths(student, cached_onnx, tmp_path):
    path = trt_exporter.export_tensorrt(student, tmp_path, "fp32", name="student",
                                        time_range=TimeRange(10, 50, 200))
    m = read_artifact(path).manifest
    assert "--minShapes=audio:1x1x13x40,video:1x3x10x112x112" in m["trtexec"]
    assert "--maxShapes=audio:1x1x13x800,video:1x3x200x112x112" in m["trtexec"]
    assert m["parity_quick"]["frames"] == [25, 50, 100]
    unbounded = trt_exporter.resolve_time_range(student, TimeRange(1, 100, None))
    assert unbounded.max_frames == DEFAULT_MAX_FRAMES


def test_a_graph_that_fails_the_check_is_refused_and_nothing_is_written(student, tmp_path, monkeypatch):
    def unsupported(model, path, frames=25):
        m = onnx.load(str(BUNDLED_ONNX))
        m.graph.node.append(helper.make_node("Unique", ["audio"], ["u"], name="not_for_tensorrt"))
        onnx.save(m, str(path))
    monkeypatch.setattr(trt_exporter.onnx_exporter, "export_onnx_file", unsupported)
    with pytest.raises(TensorRTCompatError, match="not_for_tensorrt"):
        trt_exporter.export_tensorrt(student, tmp_path, "fp32", name="student")
    assert not any(tmp_path.iterdir())


def test_bad_requests_are_refused(student, cached_onnx, tmp_path):
    with pytest.raises(EdgeSyncError, match="supports precisions fp32, fp16, int8"):
        trt_exporter.export_tensorrt(student, tmp_path, "int4")
    if not available("tensorrt"):
        with pytest.raises(EdgeSyncError, match="build_engine.py"):
            trt_exporter.export_tensorrt(student, tmp_path, "fp32", build_engine=True)
    assert not any(tmp_path.iterdir())


def test_float_biases_folds_int32_dequantization_exactly():
    q, scale, zp = np.array([10, -20, 30], np.int32), np.array([0.5, 0.25, 2.0], np.float32), np.zeros(3, np.int32)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["b"], axis=0),
         helper.make_node("Add", ["x", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(q, "q"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")])
    model = helper.make_model(graph)
    assert trt_exporter.float_biases(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add"]
    (bias,) = model.graph.initializer
    assert bias.name == "b" and np.array_equal(numpy_helper.to_array(bias), np.array([5.0, -5.0, 60.0], np.float32))


# --- build_engine.py ---------------------------------------------------------------------------------
def test_build_script_help_and_dry_run_profile(fp32):
    script = fp32 / "build_engine.py"
    assert run_script(script, "--help").returncode == 0
    done = run_script(script, "--dry-run", "--max-frames", "300", "--workspace", "2048")
    plan = json.loads(done.stdout)
    assert done.returncode == 0 and plan["precision"] == "fp32" and plan["workspace_mib"] == 2048
    assert plan["profile"]["audio"] == {"min": [1, 1, 13, 4], "opt": [1, 1, 13, 400], "max": [1, 1, 13, 1200]}
    assert plan["profile"]["video"]["max"] == [1, 3, 300, 112, 112]
    assert plan["onnx"] == str(fp32.resolve() / "model.onnx")


@pytest.mark.parametrize("args, message", [
    (("--min-frames", "50", "--opt-frames", "10"), "--min-frames <= --opt-frames"),
    (("--max-frames", "0"), "--min-frames <= --opt-frames <= --max-frames"),
    (("--workspace", "0"), "positive number of MiB"),
    (("--typing", "fast"), "invalid choice"),
    (("--onnx", "/nonexistent/model.onnx"), "no ONNX model at /nonexistent/model.onnx"),
])
def test_build_script_rejects_bad_arguments(fp32, args, message):
    done = run_script(fp32 / "build_engine.py", *args)
    assert done.returncode == 2 and message in done.stderr


@NO_TRT
def test_build_script_says_what_to_do_without_tensorrt(fp32):
    done = run_script(fp32 / "build_engine.py")
    assert done.returncode == trt_exporter.EXIT_NO_TENSORRT
    assert "TensorRT's Python package is not importable" in done.stderr and "trtexec" in done.stderr
    assert not (fp32 / "model.plan").exists()


FAKE_TENSORRT = textwrap.dedent('''
    """Stand-in for TensorRT's Python API surface that build_engine.py uses; records each call."""
    import json, os
    __version__ = os.environ.get("FAKE_TRT_VERSION", "10.15.1")
    def _log(*call):
        with open(os.environ["FAKE_TRT_LOG"], "a") as f:
            f.write(json.dumps(call) + "\\n")
    class Logger:
        WARNING, VERBOSE = 2, 4
        def __init__(self, level): pass
    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH = 0
    if not __version__.startswith("8."):
        NetworkDefinitionCreationFlag.STRONGLY_TYPED = 5
    class BuilderFlag:
        FP16, INT8 = 0, 2
    class MemoryPoolType:
        WORKSPACE = 0
    class _Tensor:
        def __init__(self, name): self.name = name
    class _Network:
        num_inputs = 2
        def get_input(self, i): return _Tensor(("audio", "video")[i])
    class OnnxParser:
        num_errors = 1
        def __init__(self, network, logger): pass
        def parse_from_file(self, path):
            _log("parse", path)
            return not os.environ.get("FAKE_TRT_PARSE_FAIL")
        def get_error(self, i): return "In node 3 (importFoo): UNSUPPORTED_NODE"
    class _Profile:
        def set_shape(self, name, lo, opt, hi): _log("set_shape", name, list(lo), list(opt), list(hi))
    class _Config:
        def set_memory_pool_limit(self, pool, size): _log("workspace", size)
        def set_flag(self, flag): _log("flag", flag)
        def add_optimization_profile(self, profile): _log("profile")
    class Builder:
        def __init__(self, logger): pass
        def create_network(self, flags): _log("network", flags); return _Network()
        def create_builder_config(self): return _Config()
        def create_optimization_profile(self): return _Profile()
        def build_serialized_network(self, network, config): return bytearray(b"FAKE-ENGINE")
''')


@pytest.fixture
def fake_trt(tmp_path):
    root = tmp_path / "fake"
    (root / "tensorrt").mkdir(parents=True)
    (root / "tensorrt" / "__init__.py").write_text(FAKE_TENSORRT)
    log = tmp_path / "calls.jsonl"
    return {"PYTHONPATH": str(root), "FAKE_TRT_LOG": str(log)}, log


def calls(log: Path) -> list[list]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_build_script_build_path_against_a_stand_in_tensorrt(fp32, fake_trt, tmp_path):
    env, log = fake_trt
    out = tmp_path / "engine" / "model.plan"
    out.parent.mkdir()
    done = run_script(fp32 / "build_engine.py", "--out", str(out), "--max-frames", "250", env=env)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"FAKE-ENGINE"
    seen = calls(log)
    assert ["network", 1 << 5] in seen  # strongly typed, no precision flags
    assert not [c for c in seen if c[0] == "flag"] and ["workspace", 1024 << 20] in seen
    assert ["set_shape", "audio", [1, 1, 13, 4], [1, 1, 13, 400], [1, 1, 13, 1000]] in seen
    assert ["set_shape", "video", [1, 3, 1, 112, 112], [1, 3, 100, 112, 112], [1, 3, 250, 112, 112]] in seen
    info = json.loads(out.with_name("model.plan.json").read_text())
    manifest = read_artifact(fp32).manifest
    assert info["onnx_sha256"] == manifest["files"]["model.onnx"]["sha256"]
    assert info["tensorrt"] == "10.15.1" and info["typing"] == "strong" and info["precision"] == "fp32"


def test_build_script_weak_typing_on_tensorrt_8_and_parse_errors(fp32, fp16, fake_trt, tmp_path):
    env, log = fake_trt
    done = run_script(fp16 / "build_engine.py", "--out", str(tmp_path / "p.plan"),
                      env={**env, "FAKE_TRT_VERSION": "8.6.1"})
    assert done.returncode == 0, done.stderr
    assert ["network", 1 << 0] in calls(log) and ["flag", 0] in calls(log)  # explicit batch + FP16 flag
    failed = run_script(fp32 / "build_engine.py", "--out", str(tmp_path / "q.plan"),
                        env={**env, "FAKE_TRT_PARSE_FAIL": "1"})
    assert failed.returncode == 1 and "could not parse" in failed.stderr and "UNSUPPORTED_NODE" in failed.stderr
    weak11 = run_script(fp32 / "build_engine.py", "--typing", "weak", "--out", str(tmp_path / "r.plan"),
                        env={**env, "FAKE_TRT_VERSION": "11.4.1"})
    assert weak11.returncode == 1 and "strongly typed networks only" in weak11.stderr
