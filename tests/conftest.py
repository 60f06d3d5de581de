"""Shared fixtures: real speech from espeak-ng, made once per test session."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SENTENCE = "The quick brown fox jumps over the lazy dog while seven wizards quietly judge the boxing match."


def speak(text: str, path: Path, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> Path:
    """Synthesise real speech to a wav file (espeak-ng's native 22.05 kHz int16 mono)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); scripts/setup.sh installs it")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True)
    return path


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """int16 samples and rate via the stdlib wave module (what syncnet_python read with scipy)."""
    import wave
    with wave.open(str(path), "rb") as w:
        rate, n, width, ch = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
        assert width == 2, "expected 16-bit wav"
        data = np.frombuffer(w.readframes(n), dtype="<i2").reshape(-1, ch)[:, 0]
    return rate, data.copy()


@pytest.fixture(scope="session")
def speech_22k(tmp_path_factory) -> tuple[int, np.ndarray]:
    """Real speech at espeak-ng's own 22.05 kHz rate, int16."""
    path = speak(SENTENCE, tmp_path_factory.mktemp("speech") / "speech22k.wav")
    return read_wav(path)


@pytest.fixture(scope="session")
def speech_16k(tmp_path_factory, speech_22k) -> tuple[int, np.ndarray]:
    """The same speech resampled to 16 kHz by sox (an independent resampler), int16."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt-get install sox); scripts/setup.sh installs it")
    d = tmp_path_factory.mktemp("speech16")
    src = speak(SENTENCE, d / "src.wav")
    dst = d / "speech16k.wav"
    subprocess.run(["sox", "-D", str(src), "-r", "16000", str(dst)], check=True, capture_output=True)
    return read_wav(dst)


@pytest.fixture(scope="session")
def tiny_calib_path(tmp_path_factory) -> Path:
    """An 8-clip synthetic calibration set, built once for every INT8 exporter test."""
    from edge_sync.calibration import build_calibration_set

    return build_calibration_set("synthetic", tmp_path_factory.mktemp("calib") / "set", count=8, frames=50,
                                 progress=False)


@pytest.fixture(scope="session")
def talking_dir(tmp_path_factory) -> Path:
    """A folder with one in-sync clip: a real face photo whose jaw follows real espeak-ng speech (the domain the
    bundled student was trained for)."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image")
    from edge_sync.data.talking_photo import make_talking_photo_clip

    root = tmp_path_factory.mktemp("talking")
    make_talking_photo_clip(root / "talk.mp4", "The quick brown fox jumps over the lazy dog, and then it runs "
                            "back across the field to the old barn.", offset_frames=0, size=(320, 240), seed=3)
    return root


@pytest.fixture(scope="session")
def streamed_student(tmp_path_factory):
    """The bundled student as an artifact exported before the embedding outputs (its manifest does not declare
    them; the graph's extra outputs go unread), so sync_file and the eval stream its evidence null."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    import json
    import shutil

    import edge_sync
    from edge_sync._paths import BUNDLED_ARTIFACT

    root = tmp_path_factory.mktemp("streamed") / "student.onnx-fp32"
    shutil.copytree(BUNDLED_ARTIFACT, root)
    manifest = json.loads((root / "manifest.json").read_text())
    contract = manifest["contract"]
    del contract["embeddings"]
    contract["outputs"] = [t for t in contract["outputs"] if t["name"] in ("sync_probs", "correlation")]
    (root / "manifest.json").write_text(json.dumps(manifest))
    engine = edge_sync.load(root)
    assert not engine.embeddings
    return engine
