"""`edge-sync sync` on a clip it never saw gives the same clip offset on every backend installed here."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")

from edge_sync._paths import BUNDLED_ARTIFACT  # noqa: E402
from edge_sync.cli import main  # noqa: E402
from edge_sync.exporters import EXPORTERS  # noqa: E402
from edge_sync.exporters.api import export  # noqa: E402
from edge_sync.runtimes.registry import BACKENDS  # noqa: E402

# (backend, target) pairs that can run here; CoreML prediction needs macOS, TensorRT a GPU with TensorRT
CASES = [("onnxruntime", "onnx"), ("openvino", "openvino"), ("litert", "tflite"), ("onnxruntime", "tensorrt")]


def _runnable(backend: str, target: str) -> bool:
    return BACKENDS[backend].installed() and (target == "onnx" or EXPORTERS[target].available())


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edge_sync.data.talking_photo import make_talking_photo_clip

    path = tmp_path_factory.mktemp("clip") / "unseen.mp4"
    return make_talking_photo_clip(path, "Every backend must hear and see the same thing in this little clip.",
                                   offset_frames=5, seed=77, voice="en-gb-x-rp", speed=170)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("art")
    made = {"onnx": BUNDLED_ARTIFACT}
    for backend, target in CASES[1:]:
        if _runnable(backend, target):
            options = {"buckets": (250,)} if target == "tflite" else {}
            made[target] = export("student", target, "fp32", out, **options)[0]
    return made


@pytest.mark.parametrize(("backend", "target"), CASES)
def test_sync_gives_the_same_offset_on_every_backend(clip, artifacts, backend, target, capsys):
    if not _runnable(backend, target):
        pytest.skip(f"{backend} or the {target} toolchain is not installed here")
    main(["sync", str(clip.path), "--artifact", str(artifacts[target]), "--backend", backend, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == backend
    assert data["offset_frames"] == 5, data  # planted: sound 5 frames late
    assert len(data["frames"]) == data["num_frames"] > 100
