"""Which artifacts a machine cannot run at all (parity and bench skip them instead of failing)."""
from __future__ import annotations

from edge_sync.runtimes.platforms import artifact_skip_reason, skip_reason
from tests.artifact_helpers import edited_copy


def test_coreml_is_skipped_off_macos_only():
    reason = skip_reason("coreml", platform="linux")
    assert reason == "coreml artifacts run on macOS only (this machine: Linux)"
    assert skip_reason("coreml", platform="darwin") is None
    assert skip_reason("coreml", backend="coreml", platform="win32").endswith("(this machine: Windows)")


def test_a_missing_package_is_not_a_reason_to_skip():
    # tensorrt artifacts also run on onnxruntime; an uninstalled backend is an error naming its extra, not a skip
    for target in ("onnx", "tensorrt", "openvino", "tflite"):
        assert skip_reason(target, platform="linux") is None
    assert skip_reason("onnx", backend="coreml", platform="linux") is None  # a wrong backend: loading says so


def test_an_artifact_is_judged_by_its_manifest(tmp_path):
    art = edited_copy(tmp_path / "renamed.onnx-fp32", lambda m: m.update(target="coreml"))
    assert "coreml" in artifact_skip_reason(art, platform="linux")
    assert artifact_skip_reason(tmp_path / "missing", platform="linux") is None  # loading reports the real error
