"""CoreML backend: a clear error off macOS, input checks CoreML cannot do itself, and (macOS) PyTorch parity."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("coremltools", reason="the coreml backend needs coremltools: pip install 'edge-sync[coreml]'")

import edge_sync.exporters.coreml  # noqa: E402,F401  (registers the coreml export target)
from edge_sync.artifact import read_artifact  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.exporters.api import export  # noqa: E402
from edge_sync.runtimes import coreml_backend  # noqa: E402
from edge_sync.runtimes.coreml_backend import InputLimits, create, require_macos  # noqa: E402

ON_MAC = sys.platform == "darwin"
PRECISIONS = ("fp32", "fp16", "int8") if ON_MAC else ("fp32",)  # off macOS one artifact shows the error
AGREEMENT = {"fp32": 1.0, "fp16": 0.95, "int8": 0.8}
MAX_ERR = {"fp32": 1e-4, "fp16": 0.03, "int8": 0.25}  # on sync_probs, CPU_ONLY compute units


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml-rt")
    return {p: read_artifact(export("student", "coreml", p, out)[0]) for p in PRECISIONS}


def test_backend_module_never_imports_torch():
    tree = ast.parse(Path(coreml_backend.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(n.split(".")[0] == "torch" for n in names)


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_off_macos_error_names_macos_and_a_backend_that_runs_here(platform):
    with pytest.raises(EdgeSyncError, match=r"CoreML prediction needs macOS.*--target onnx.*onnxruntime"):
        require_macos(platform)
    require_macos("darwin")  # no error where CoreML exists


@pytest.mark.skipif(ON_MAC, reason="this is the off-macOS error; macOS runs the model")
def test_create_and_engine_load_refuse_clearly_off_macos(artifacts):
    from edge_sync.runtimes.api import load
    from edge_sync.runtimes.registry import BACKENDS

    with pytest.raises(EdgeSyncError, match="needs macOS"):
        create(artifacts["fp32"], threads=None)
    assert "coreml" in BACKENDS, ('register the backend in edge_sync/runtimes/registry.py: register_backend('
                                  'BackendInfo("coreml", ("coreml",), "coremltools", "coreml", 40, '
                                  '"edge_sync.runtimes.coreml_backend:create"))')
    for backend in ("coreml", "auto"):
        with pytest.raises(EdgeSyncError, match="needs macOS.*--target onnx"):
            load(artifacts["fp32"].path, backend=backend)


def test_input_limits_come_from_the_manifest_and_tie_audio_to_video(artifacts):
    limits = InputLimits.from_manifest(artifacts["fp32"].manifest)
    assert limits == InputLimits(steps=4, min_frames=1, max_frames=1000)
    video = np.zeros((1, 3, 10, 112, 112), np.float32)
    assert limits.check(np.zeros((1, 1, 13, 40), np.float32), video) == 10
    with pytest.raises(EdgeSyncError, match="exactly 4 per frame"):
        limits.check(np.zeros((1, 1, 13, 41), np.float32), video)
    with pytest.raises(EdgeSyncError, match="time range"):
        limits.check(np.zeros((1, 1, 13, 4004), np.float32), np.zeros((1, 3, 1001, 1, 1), np.float32))
    with pytest.raises(EdgeSyncError, match="same B"):
        limits.check(np.zeros((2, 1, 13, 40), np.float32), video)


@pytest.mark.skipif(not ON_MAC, reason="CoreML prediction needs macOS")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_prediction_matches_pytorch_at_25_and_37_frames(artifacts, precision):
    import torch

    from edge_sync.exporters.onnx import sample_inputs
    from edge_sync.models.io import load

    model = load("student")
    session = create(artifacts[precision], threads=None, units="CPU_ONLY")
    for frames in (25, 37):
        audio, video = sample_inputs(model, frames, batch=2, seed=frames)  # batch 2 runs clip by clip
        with torch.inference_mode():
            ref = [x.numpy() for x in model(audio, video)]
        probs, corr = session.run(audio.numpy(), video.numpy())
        assert probs.dtype == corr.dtype == np.float32 and probs.shape == (2, 31, frames)
        assert np.abs(probs - ref[0]).max() <= MAX_ERR[precision]
        assert (probs.argmax(1) == ref[0].argmax(1)).mean() >= AGREEMENT[precision]
