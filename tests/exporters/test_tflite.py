"""LiteRT export of the bundled student: one static file per bucket, FP32 equal to PyTorch, FP16 weights,
INT8 from the given calibration set with float probabilities, manifest fields, bad requests refused.

Small buckets (25 frames, and 25+40 for INT8) keep this file near a minute: each litert-torch conversion is
~15-30 s here, and the exporter converts each (model, T) once per process, so FP32 and FP16 share one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ai_edge_litert", reason="pip install 'edge-sync[tflite]'")
pytest.importorskip("litert_torch", reason="pip install 'edge-sync[tflite]' (litert-torch exports)")
pytest.importorskip("ai_edge_quantizer", reason="pip install 'edge-sync[tflite]' (ai-edge-quantizer)")

import edge_sync.exporters.tflite as tfl  # noqa: E402  (registers the target)
from edge_sync.artifact import read_artifact  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.exporters import get_exporter  # noqa: E402
from edge_sync.models.io import load  # noqa: E402
from edge_sync.runtimes.tflite_backend import create  # noqa: E402

BUCKET = 25
INT8_BUCKETS = (25, 40)


@pytest.fixture(scope="module")
def student():
    return load("student").eval()


@pytest.fixture(scope="module")
def calib(tiny_calib_path):
    from edge_sync.calibration import load_calibration_set

    return load_calibration_set(tiny_calib_path)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="module")
def fp32(student, out_dir):
    return tfl.export_tflite(student, out_dir, "fp32", name="student", buckets=(BUCKET,))


@pytest.fixture(scope="module")
def fp16(student, out_dir, fp32):
    return tfl.export_tflite(student, out_dir, "fp16", name="student", buckets=(BUCKET,))


@pytest.fixture(scope="module")
def int8(student, out_dir, calib, fp32):
    return tfl.export_tflite(student, out_dir, "int8", name="student", buckets=INT8_BUCKETS, calib=calib.path)


def holdout(frames: int, count: int):
    """Real-like clips the calibration never saw (hold-out voices and looks)."""
    from edge_sync.data.synthetic import make_clip

    clips = [make_clip(1000, i, "holdout", frames=frames) for i in range(count)]
    return [(c.audio[None].astype(np.float32), c.video[None].astype(np.float32)) for c in clips]


def torch_outputs(model, audio, video):
    with torch.inference_mode():
        return [x.numpy() for x in model(torch.from_numpy(audio), torch.from_numpy(video))]


def test_registered_with_its_toolchain():
    info = get_exporter("tflite")
    assert info.precisions == ("fp32", "fp16", "int8") and info.extra == "tflite"
    assert set(info.modules) == {"torch", "litert_torch", "ai_edge_quantizer", "ai_edge_litert"}


def test_fp32_layout_and_manifest(fp32):
    m = read_artifact(fp32).manifest
    assert fp32.name == "student.tflite-fp32" and m["target"] == "tflite" and m["precision"] == "fp32"
    assert m["entry"] == {"model": f"student_t{BUCKET}.tflite", f"t{BUCKET}": f"student_t{BUCKET}.tflite"}
    assert set(m["files"]) == {f"student_t{BUCKET}.tflite"}
    assert m["time_range"]["dynamic"] is False and m["time_range"]["buckets"] == [BUCKET]
    assert m["io"]["video"]["shape"] == [1, 3, BUCKET, 112, 112] and m["io"]["audio"]["shape"] == [1, 1, 13, 4 * BUCKET]
    assert all(d["dtype"] == "float32" for d in m["io"].values())
    assert m["tools"]["litert-torch"] and m["tools"]["ai-edge-litert"] and "calibration" not in m
    assert m["parity_quick"]["max_abs_err"]["sync_probs"] <= 1e-4


def test_fp32_equals_pytorch_at_the_bucket(fp32, student):
    session = create(read_artifact(fp32), threads=2)
    for audio, video in holdout(BUCKET, 2):
        ref = torch_outputs(student, audio, video)
        out = session.run(audio, video)
        assert out[0].shape == ref[0].shape == (1, 31, BUCKET) and out[0].dtype == np.float32
        assert np.abs(out[0] - ref[0]).max() <= 1e-4
        assert np.abs(out[1] - ref[1]).max() <= 1e-4
        with torch.inference_mode():  # the embeddings the evidence null reads (edge_sync.models.embeddings)
            ref_emb = [e.numpy() for e in student.embed(torch.from_numpy(audio), torch.from_numpy(video))]
        assert session.embeddings and len(out) == 4
        assert np.abs(out[2] - ref_emb[0]).max() <= 1e-4 and np.abs(out[3] - ref_emb[1]).max() <= 1e-4


def test_batchnorm_folding_is_exact(student):
    folded = tfl.fold_batchnorm(student)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in student.modules())  # a copy
    audio, video = holdout(BUCKET, 1)[0]
    ref, out = torch_outputs(student, audio, video), torch_outputs(folded, audio, video)
    assert np.abs(ref[0] - out[0]).max() <= 1e-5


def test_fp16_has_half_weights_and_agrees_per_frame(fp16, fp32, student):
    m = read_artifact(fp16).manifest
    name = f"student_t{BUCKET}.tflite"
    assert m["files"][name]["bytes"] < 0.6 * read_artifact(fp32).manifest["files"][name]["bytes"]
    assert all(d["dtype"] == "float32" for d in m["io"].values())
    session = create(read_artifact(fp16), threads=2)
    agree = [(session.run(a, v)[0].argmax(1) == torch_outputs(student, a, v)[0].argmax(1)).mean()
             for a, v in holdout(BUCKET, 4)]
    assert np.mean(agree) >= 0.99


def test_int8_is_calibrated_on_the_given_set_and_keeps_float_probabilities(int8, fp32, calib):
    m = read_artifact(int8).manifest
    assert m["calibration"]["id"] == calib.id and m["calibration"]["content_sha256"] == calib.sha256
    assert m["quantization"]["tool"] == "ai-edge-quantizer"
    assert m["quantization"]["calibrated_at_frames"] == [INT8_BUCKETS[0]] and m["quantization"]["shared_across_buckets"]
    assert m["time_range"]["buckets"] == list(INT8_BUCKETS)
    assert m["entry"] == {"model": "student_t40.tflite", "t25": "student_t25.tflite", "t40": "student_t40.tflite"}
    assert all(d["dtype"] == "float32" for d in m["io"].values())  # probabilities never pass an int8 scale
    small = m["files"]["student_t25.tflite"]["bytes"]
    assert small < 0.4 * read_artifact(fp32).manifest["files"]["student_t25.tflite"]["bytes"]  # weights are int8
    assert m["parity_quick"]["frame_offset_agreement"] >= 0.9
    probs = create(read_artifact(int8), threads=2).run(*holdout(INT8_BUCKETS[1], 1)[0])[0]
    assert probs.shape == (1, 31, INT8_BUCKETS[1]) and np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_int8_clip_offsets_match_fp32_on_held_out_clips(int8, fp32):
    q, f = create(read_artifact(int8), threads=2), create(read_artifact(fp32), threads=2)
    clips = holdout(BUCKET, 6)
    offsets = [(int(q.run(a, v)[0][0].mean(1).argmax()), int(f.run(a, v)[0][0].mean(1).argmax())) for a, v in clips]
    assert sum(a == b for a, b in offsets) >= 5
    frame = np.mean([(q.run(a, v)[0].argmax(1) == f.run(a, v)[0].argmax(1)).mean() for a, v in clips])
    assert frame >= 0.95


def test_compact_files_keep_their_signature(fp32):
    from ai_edge_litert.interpreter import Interpreter

    path = fp32 / f"student_t{BUCKET}.tflite"
    sig = Interpreter(model_path=str(path)).get_signature_list()["serving_default"]
    assert set(sig["inputs"]) == {"audio", "video"}
    assert set(sig["outputs"]) == {"sync_probs", "correlation", "audio_emb", "video_emb"}
    assert b"X3DVideoTrunk" not in path.read_bytes()  # module-path tensor names are dropped


def test_bad_requests_are_refused_before_any_work(student, tmp_path):
    with pytest.raises(EdgeSyncError, match="supports precisions"):
        tfl.export_tflite(student, tmp_path, "int4")
    with pytest.raises(EdgeSyncError, match="buckets"):
        tfl.export_tflite(student, tmp_path, "fp32", buckets=(0,))
    with pytest.raises(EdgeSyncError, match="buckets"):
        tfl.export_tflite(student, tmp_path, "fp32", buckets=("long",))
    with pytest.raises(EdgeSyncError, match="does not know"):
        tfl.int8_quantizer(tmp_path / "x.tflite", tfl.Int8Recipe(int8_ops=("CONV_3D_FANCY",)))
    assert not any(tmp_path.iterdir())  # nothing half-written
