"""The LiteRT backend: one interpreter per time bucket, a clear error for any other T, float in and out even for
int8 I/O models, thread-safe, numpy + interpreter only (no torch), tflite_runtime as a fallback.

A tiny model with the contract's inputs and outputs stands in for the student here (converting it takes seconds);
tests/exporters/test_tflite.py runs the real student through this backend.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import types

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="pip install 'edge-sync[litert]'")

from edge_sync.artifact import read_artifact, write_artifact  # noqa: E402
from edge_sync.errors import EdgeSyncError, MissingExtraError  # noqa: E402
from edge_sync.runtimes import tflite_backend as tb  # noqa: E402
from tests.artifact_helpers import edited_copy, set_contract  # noqa: E402

BUCKETS = (4, 6)
SIZE = 112


def tiny_model():
    """audio [1,1,13,4T], video [1,3,T,112,112] -> dict(sync_probs, correlation) [1,31,T]; each frame depends on
    its neighbours (a k=3 temporal conv), so windowing is exercised like the real model's receptive field. A
    sigmoid stands in for the softmax: a fully int8 softmax is too coarse to check I/O scaling against."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.video = nn.Conv1d(3, 31, 3, padding=1)
            self.audio = nn.Conv1d(13, 31, 1)

        def forward(self, audio, video):
            frames = video.shape[2]
            v = video.mean(dim=(3, 4))
            a = audio.reshape(audio.shape[0], 13, frames, 4).mean(dim=3)
            logits = self.video(v) + self.audio(a)
            return {"sync_probs": torch.sigmoid(logits), "correlation": torch.tanh(logits)}

    return Tiny().eval()


def inputs(frames: int, seed: int = 0, batch: int = 1):
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 5, (batch, 1, 13, 4 * frames)).astype(np.float32)
    video = rng.uniform(-1, 1, (batch, 3, frames, SIZE, SIZE)).astype(np.float32)
    return audio, video


def reference(model, audio, video):
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(audio), torch.from_numpy(video))
    return out["sync_probs"].numpy(), out["correlation"].numpy()


def write_tiny_artifact(out_dir, precision: str, files: dict[int, bytes]):
    from edge_sync.spec import MOUTH, ModelContract

    def write(tmp):
        for t, data in files.items():
            (tmp / f"tiny_t{t}.tflite").write_bytes(data)
        return {"entry": {"model": f"tiny_t{max(files)}.tflite", **{f"t{t}": f"tiny_t{t}.tflite" for t in files}}}

    manifest = {"contract": ModelContract(audio_input="mfcc", video=MOUTH, max_offset=15).to_dict(),
                "time_range": {"min_frames": 1, "opt_frames": max(files), "max_frames": None, "dynamic": False,
                               "buckets": sorted(files)},
                "receptive_field_frames": 1}
    return write_artifact(out_dir, "tiny", "tflite", precision, write, manifest)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("litert_torch", reason="converting the test model needs litert-torch")
    return tiny_model()


@pytest.fixture(scope="module")
def float_files(model, tmp_path_factory):
    import litert_torch

    d = tmp_path_factory.mktemp("float")
    out = {}
    for t in BUCKETS:
        audio, video = inputs(t)
        import torch

        litert_torch.convert(model, sample_kwargs={"audio": torch.from_numpy(audio),
                                                   "video": torch.from_numpy(video)}).export(str(d / f"{t}.tflite"))
        out[t] = (d / f"{t}.tflite").read_bytes()
    return out


@pytest.fixture(scope="module")
def float_artifact(float_files, tmp_path_factory):
    return read_artifact(write_tiny_artifact(tmp_path_factory.mktemp("art"), "fp32", float_files))


@pytest.fixture(scope="module")
def int8_io_artifact(float_files, tmp_path_factory):
    """Everything int8, graph inputs and outputs included: what a fully integer model from another tool looks like."""
    pytest.importorskip("ai_edge_quantizer", reason="quantizing the test model needs ai-edge-quantizer")
    from ai_edge_quantizer import quantizer, recipe

    d = tmp_path_factory.mktemp("q")
    data = [{"audio": a, "video": v} for a, v in (inputs(BUCKETS[0], seed=s) for s in range(8))]
    q = quantizer.Quantizer(float_files[BUCKETS[0]], recipe.static_wi8_ai8())
    result = q.quantize(q.calibrate({"serving_default": data}, num_threads=1), enable_progress_report=False)
    result.export_model(str(d / "q.tflite"), overwrite=True)
    return read_artifact(write_tiny_artifact(tmp_path_factory.mktemp("art8"), "int8",
                                             {BUCKETS[0]: (d / "q.tflite").read_bytes()}))


def test_runs_every_bucket_like_the_source_model(float_artifact, model):
    session = tb.create(float_artifact, threads=2)
    assert session.buckets == BUCKETS and not session._runners  # interpreters load on first use
    for t in BUCKETS:
        audio, video = inputs(t, seed=t)
        probs, corr = session.run(audio, video)
        ref = reference(model, audio, video)
        assert probs.dtype == corr.dtype == np.float32 and probs.shape == corr.shape == (1, 31, t)
        assert np.abs(probs - ref[0]).max() <= 1e-5 and np.abs(corr - ref[1]).max() <= 1e-5
    assert set(session._runners) == set(BUCKETS)


def test_a_length_that_is_not_a_bucket_is_refused_clearly(float_artifact):
    session = tb.create(float_artifact, threads=1)
    with pytest.raises(tb.BucketError, match=r"exactly 4 or 6 video frames, got T=5"):
        session.run(*inputs(5))
    audio, video = inputs(4)
    with pytest.raises(EdgeSyncError, match="audio has shape"):
        session.run(audio[..., :-4], video)
    with pytest.raises(EdgeSyncError, match="same B"):
        session.run(audio, np.concatenate([video, video]))


def test_batches_run_clip_by_clip(float_artifact, model):
    audio, video = inputs(4, seed=3, batch=3)
    probs, _ = tb.create(float_artifact, threads=None).run(audio, video)
    assert probs.shape == (3, 31, 4)
    assert np.abs(probs - reference(model, audio, video)[0]).max() <= 1e-5


def test_int8_inputs_and_outputs_are_scaled_by_their_own_parameters(int8_io_artifact, model):
    session = tb.create(int8_io_artifact, threads=1)
    runner = session.runner(BUCKETS[0])
    assert np.dtype(runner.inputs["video"]["dtype"]) == np.int8  # the quantized path is really exercised
    assert np.dtype(runner.outputs["sync_probs"]["dtype"]) == np.int8
    audio, video = inputs(BUCKETS[0], seed=1)
    probs, corr = session.run(audio, video)
    ref = reference(model, audio, video)
    # a missing scale would leave raw integers outside [0, 1] / [-1, 1]; a missing zero point (-128 on the
    # sigmoid output) would shift probabilities by 0.5. What is left is the int8 model's own error.
    assert probs.dtype == corr.dtype == np.float32
    assert 0.0 <= probs.min() and probs.max() <= 1.0 and -1.0 <= corr.min() and corr.max() <= 1.0
    assert np.abs(probs - ref[0]).max() < 0.1 and np.abs(corr - ref[1]).max() < 0.3


def test_quantize_round_trip_uses_scale_and_zero_point():
    detail = {"name": "x", "dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([-100.0, -1.0, 0.0, 0.26, 1000.0], np.float32)
    q = tb.quantize(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -3, -2, 127]
    assert tb.dequantize(q, detail).tolist() == [-62.5, -1.0, 0.0, 0.5, 65.0]
    assert np.array_equal(tb.quantize(x, {"name": "f", "dtype": np.float32, "quantization": (0.0, 0)}), x)


def test_concurrent_callers_get_the_sequential_answer(float_artifact):
    session = tb.create(float_artifact, threads=1)
    clips = {t: inputs(t, seed=10 + t) for t in BUCKETS}
    expected = {t: session.run(*clips[t])[0] for t in BUCKETS}
    errors = []

    def worker(i: int) -> None:
        t = BUCKETS[i % 2]
        for _ in range(5):
            if not np.array_equal(session.run(*clips[t])[0], expected[t]):
                errors.append(t)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_manifest_without_buckets_or_files_is_refused(float_artifact, tmp_path):
    with pytest.raises(EdgeSyncError, match="no time buckets"):
        tb.bucket_files({"entry": {"model": "x.tflite"}, "time_range": {}})
    with pytest.raises(EdgeSyncError, match="no 't6' file"):
        tb.bucket_files({"entry": {"t4": "a"}, "time_range": {"buckets": [4, 6]}})
    with pytest.raises(EdgeSyncError, match="missing"):
        tb.LiteRTSession({4: tmp_path / "gone.tflite"})


def test_falls_back_to_tflite_runtime_and_names_the_extra(monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import now fails
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = Interpreter
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert tb.interpreter_class() is Interpreter
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingExtraError, match=r"edge-sync\[litert\]"):
        tb.interpreter_class()


def test_runs_without_torch(float_artifact):
    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None  # any torch import would fail\n"
        "from edge_sync.artifact import read_artifact\n"
        "from edge_sync.runtimes.tflite_backend import create\n"
        f"s = create(read_artifact({str(float_artifact.path)!r}), 1)\n"
        "p, c = s.run(np.zeros((1, 1, 13, 16), np.float32), np.zeros((1, 3, 4, 112, 112), np.float32))\n"
        "assert p.shape == (1, 31, 4)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_engine_windows_clips_to_the_buckets(float_artifact, model):
    from edge_sync.runtimes.registry import BACKENDS

    if "litert" not in BACKENDS:
        pytest.skip("the litert backend is not in the registry yet (edge_sync/runtimes/registry.py)")
    from edge_sync.runtimes.api import Engine

    engine = Engine(float_artifact, backend="litert", threads=1)
    for frames in (3, 11):  # shorter than every bucket (padded), longer than the longest (windowed)
        audio, video = inputs(frames, seed=frames)
        result = engine.run(audio, video)
        assert result.frames == frames and engine.backend == "litert"
    audio, video = inputs(11, seed=11)
    ref = reference(model, audio, video)[0][0]
    assert np.abs(engine.run(audio, video).frame_probs - ref).max() <= 1e-5


def test_a_contract_the_model_does_not_have_is_refused(float_artifact, tmp_path):
    from edge_sync.artifact import ArtifactError
    from edge_sync.runtimes.api import Engine

    session = tb.create(float_artifact, threads=1)
    assert session.io_shapes()["audio"] == (1, 1, 13, 4 * BUCKETS[0])  # the shortest bucket's interpreter
    bad = read_artifact(edited_copy(tmp_path / "a", set_contract("audio_input", "logmel"), src=float_artifact.path))
    with pytest.raises(ArtifactError, match=r"contract.audio_input = 'logmel' means audio \[B, 1, 64, 4T\], but "
                                            r"the model's audio is \[1, 1, 13, 16\]"):
        Engine(bad, backend="litert", threads=1)


@pytest.mark.parametrize("frames", [5, 11, 13])
def test_a_stream_on_buckets_covers_every_frame_like_the_offline_run(float_artifact, frames):
    """The last window of a bucketed stream is a whole bucket ending at the last frame: the frames it reaches back
    to must still be buffered (they were dropped once, losing the clip's tail)."""
    from edge_sync.features.mfcc import audio_to_mfcc_input
    from edge_sync.runtimes.api import Engine
    from edge_sync.spec import MOUTH, SAMPLES_PER_FRAME

    engine = Engine(float_artifact, backend="litert", threads=1)
    rng = np.random.default_rng(frames)
    wave = rng.normal(0, 0.1, frames * SAMPLES_PER_FRAME).astype(np.float32)
    crops = rng.integers(0, 255, (frames, SIZE, SIZE, 3), dtype=np.uint8)
    stream = engine.stream()
    emitted = []
    for t in range(frames):
        emitted += stream.push(audio=wave[t * SAMPLES_PER_FRAME:(t + 1) * SAMPLES_PER_FRAME], crops=crops[t:t + 1])
    emitted += stream.flush()
    assert [f.frame for f in emitted] == list(range(frames))
    offline = engine.run(audio_to_mfcc_input(wave, frames), MOUTH.normalise(crops)[None])
    np.testing.assert_allclose(stream.result().frame_probs, offline.frame_probs, atol=1e-5)
