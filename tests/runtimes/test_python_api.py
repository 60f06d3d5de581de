"""The Python API as a user meets it: the file result's shortcuts, short reprs, load()'s visible options,
onnxruntime execution providers, py.typed."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import edge_sync
from edge_sync.errors import EdgeSyncError
from edge_sync.runtimes import api
from edge_sync.runtimes.api import FileSync, TrackSync
from edge_sync.runtimes.registry import BACKENDS
from edge_sync.runtimes.result import SyncResult

ROOT = Path(__file__).resolve().parents[2]
REPR_LIMIT = 400  # characters: the headline numbers and array shapes, never the arrays (6-24 KB for a clip)


def _result(offset: int, frames: int) -> SyncResult:
    """A result whose correlation peaks at ``offset`` (k > 0: sound late), from outputs of realistic size."""
    corr = np.zeros((31, frames), np.float32)
    corr[15 + offset] = 0.9
    probs = np.full((31, frames), 0.5 / 30, np.float32)
    probs[15 + offset] = 0.5
    return SyncResult.from_outputs(probs, corr, backend="onnxruntime")


@pytest.fixture()
def file_sync() -> FileSync:
    """Two face-track segments; the longer (track 4, +3 frames) is the clip's answer, the other reads -5."""
    long_ = TrackSync(4, 100, _result(3, 2000), {"box": np.zeros((2000, 3)), "mouth_motion": np.zeros(2000)})
    short = TrackSync(1, 0, _result(-5, 90))
    return FileSync("talk.mp4", 2100, [short, long_], audio_level_db=np.zeros(2100))


def test_file_result_reads_the_main_answer_directly(file_sync):
    main = file_sync.main.result
    assert file_sync.main.track_id == 4
    assert file_sync.offset_frames == main.offset_frames == 3
    assert file_sync.audio_delay_ms == main.audio_delay_ms == 120.0
    assert file_sync.confidence == main.confidence and file_sync.confidence > 0
    assert file_sync.probability == main.probability
    assert file_sync.no_speech is main.no_speech is False
    with pytest.raises(AttributeError, match="main.result.offset_frames"):
        file_sync.offset_frames = 0  # read-only, like the properties it stands for


def test_reprs_are_short_and_show_the_headline_numbers(file_sync):
    for obj in (file_sync, file_sync.main, file_sync.main.result):
        text = repr(obj)
        assert len(text) <= REPR_LIMIT, text
        assert "offset_frames=3" in text and "[[" not in text and "array(" not in text
    assert "float32[31, 2000]" in repr(file_sync.main.result)  # shapes stand in for the arrays
    assert "audio_delay_ms=120" in repr(file_sync) and "tracks=2" in repr(file_sync)
    assert str(file_sync) == repr(file_sync)
    assert repr(FileSync("empty.mp4", 10, [])).startswith("FileSync('empty.mp4', tracks=0")


def test_results_stay_dataclasses_with_their_fields(file_sync):
    from dataclasses import fields

    assert {f.name for f in fields(SyncResult)} >= {"frame_probs", "correlation", "offset_frames", "confidence"}
    assert {f.name for f in fields(FileSync)} >= {"path", "num_frames", "tracks"}
    assert file_sync.main.result.frame_probs.shape == (31, 2000)


def test_load_shows_its_options():
    assert edge_sync.load is api.load  # no wrapper hiding the options behind **kwargs
    params = inspect.signature(edge_sync.load).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert {"path", "backend", "providers", "threads", "window_frames", "low_memory"} <= set(params)
    for name in ("backend", "providers", "threads", "window_frames", "low_memory"):
        assert f"{name}:" in edge_sync.load.__doc__, name
    assert {"Engine", "FileSync", "SyncResult"} <= set(dir(edge_sync))


def test_package_is_typed():
    assert (ROOT / "edge_sync" / "py.typed").is_file()
    # the wheel ships it only if package-data lists it (tomllib is 3.11+, the package supports 3.10)
    table = re.search(r"^\[tool\.setuptools\.package-data\]\n(.*?)(^\[|\Z)", (ROOT / "pyproject.toml").read_text(),
                      re.M | re.S)
    assert table and re.search(r"^edge_sync\s*=.*\"py\.typed\"", table.group(1), re.M)


# --- onnxruntime execution providers -------------------------------------------------------------------------

@pytest.fixture()
def ort():
    return pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")


def test_engine_repr_names_artifact_target_precision_backend_contract(ort):
    engine = edge_sync.load()
    text = repr(engine)
    assert len(text) <= 200, text
    for part in ("student.onnx-fp32", "target=onnx", "precision=fp32", "backend=onnxruntime", "mfcc", "mouth112",
                 "-15..15"):
        assert part in text, (part, text)


def test_providers_reach_onnxruntime(ort):
    engine = edge_sync.load(providers=["CPUExecutionProvider"])
    assert engine._session.providers == ["CPUExecutionProvider"]
    assert edge_sync.load(providers="CPUExecutionProvider")._session.providers == ["CPUExecutionProvider"]


def test_providers_are_passed_through_in_order(ort, monkeypatch):
    """A device build's providers (CoreML here, faked) go to InferenceSession as given, options included."""
    seen = {}

    class Session:
        def __init__(self, path, sess_options=None, providers=None):
            seen["providers"] = providers
            self._real = real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return [p if isinstance(p, str) else p[0] for p in seen["providers"]]

        def __getattr__(self, name):
            return getattr(self._real, name)

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CoreMLExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    wanted = [("CoreMLExecutionProvider", {"MLComputeUnits": "ALL"}), "CPUExecutionProvider"]
    engine = edge_sync.load(providers=wanted)
    assert seen["providers"] == wanted
    assert engine.run(np.zeros((1, 1, 13, 40), np.float32), np.zeros((1, 3, 10, 112, 112), np.float32)).frames == 10


@pytest.mark.parametrize("providers", [["NoSuchExecutionProvider"], ["CPUExecutionProvider", "QNNExecutionProvider"],
                                       [], [3], [("CPUExecutionProvider",)]])
def test_unavailable_or_malformed_providers_are_refused_in_one_line(ort, providers):
    with pytest.raises(EdgeSyncError) as err:
        edge_sync.load(providers=providers)
    message = str(err.value)
    assert "\n" not in message
    assert all(p in message for p in ort.get_available_providers()), message  # lists what is available


def test_backends_without_providers_refuse_them():
    """The option is refused before anything is imported, so the answer is the same whether or not it is installed."""
    for name, info in BACKENDS.items():
        if "providers" in info.options:
            continue
        with pytest.raises(EdgeSyncError, match=f"the {name} backend takes no providers= .*onnxruntime"):
            info.create(object(), None, providers=["CPUExecutionProvider"])
