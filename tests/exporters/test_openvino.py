"""OpenVINO export: IR at fp32/fp16/int8, dynamic T against PyTorch, INT8 from the given calibration set with the
cross-modal part left in float, bad requests refused."""
from __future__ import annotations


import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="pip install 'edge-sync[openvino]'")
pytest.importorskip("nncf", reason="pip install 'edge-sync[openvino]'")
pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")

import edge_sync.exporters.openvino as ov_export  # noqa: E402  (registers the target)
from edge_sync.artifact import read_artifact  # noqa: E402
from edge_sync.calibration import CalibrationSet, load_calibration_set  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.exporters import get_exporter  # noqa: E402
from edge_sync.exporters.common import TimeRange  # noqa: E402
from edge_sync.exporters.onnx import sample_inputs  # noqa: E402
from edge_sync.models.io import load  # noqa: E402
from edge_sync.runtimes.openvino_backend import create  # noqa: E402
from tests.exporters.helpers import onnx_exported_once  # noqa: E402

TIME_RANGE = TimeRange(min_frames=5, opt_frames=50, max_frames=400)


@pytest.fixture(scope="module")
def student():
    return load("student").eval()


@pytest.fixture(scope="module", autouse=True)
def one_onnx_export(student, tmp_path_factory):
    """All precisions convert the same ONNX, so the (slow, ~20 s on 2 cores) dynamo export runs once through the
    real export_onnx_file; tests/exporters/test_onnx.py covers that export itself."""
    cache = tmp_path_factory.getbasetemp() / f"openvino-{student.checkpoint_sha256[:12]}.onnx"
    with onnx_exported_once(ov_export, cache):
        yield


@pytest.fixture(scope="module")
def calib(tiny_calib_path) -> CalibrationSet:
    return load_calibration_set(tiny_calib_path)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("art")


@pytest.fixture(scope="module")
def fp32(student, out_dir):
    return ov_export.export_openvino(student, out_dir, "fp32", name="student", source={"model": "student"},
                                     time_range=TIME_RANGE)


@pytest.fixture(scope="module")
def fp16(student, out_dir):
    return ov_export.export_openvino(student, out_dir, "fp16", name="student")


@pytest.fixture(scope="module")
def int8(student, out_dir, calib):
    """INT8 export with a spy on CalibrationSet.pairs: which sets NNCF actually drew clips from."""
    used = []
    real_pairs = CalibrationSet.pairs

    def spy(self, *args, **kwargs):
        used.append(self.path)
        return real_pairs(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CalibrationSet, "pairs", spy)
        path = ov_export.export_openvino(student, out_dir, "int8", name="student", calib=calib)
    return path, used


@pytest.fixture(scope="module")
def holdout():
    """Hold-out clips (never in a calibration set) at T=37: neither the export sample nor the calibration T."""
    from edge_sync.data.synthetic import make_clip

    clips = [make_clip(1000, i, "holdout", frames=37) for i in range(8)]
    return np.stack([c.audio for c in clips]), np.stack([c.video for c in clips]).astype(np.float32)


def _torch(model, audio, video):
    with torch.inference_mode():
        return [x.numpy() for x in model(torch.as_tensor(audio), torch.as_tensor(video))]


def test_fp32_artifact_layout_and_manifest(fp32):
    m = read_artifact(fp32).manifest
    assert fp32.name == "student.openvino-fp32"
    assert m["target"] == "openvino" and m["precision"] == "fp32" and m["entry"] == {"model": "model.xml"}
    assert set(m["files"]) == {"model.xml", "model.bin"} and m["runs_on"] == ["openvino"]
    assert m["time_range"] == {"min_frames": 5, "opt_frames": 50, "max_frames": 400, "dynamic": True}
    assert m["tools"]["openvino"] and m["tools"]["nncf"] and m["contract"]["max_offset"] == 15
    assert m["source"] == {"model": "student"} and "calibration" not in m and "quantization" not in m
    quick = m["parity_quick"]
    assert quick["backend"] == "openvino" and quick["inference_precision"] == "f32"
    assert quick["frames"] == [7, 25, 100] and quick["max_abs_err"]["sync_probs"] <= 1e-4


@pytest.mark.parametrize("frames,batch", [(37, 2), (250, 1)])
def test_fp32_matches_pytorch_at_lengths_other_than_the_export_sample(fp32, student, frames, batch):
    audio, video = sample_inputs(student, frames, batch=batch, seed=frames)
    probs, corr, audio_emb, video_emb = create(read_artifact(fp32), threads=2).run(audio.numpy(), video.numpy())
    ref = _torch(student, audio, video)
    assert probs.shape == corr.shape == (batch, 31, frames) and probs.dtype == np.float32
    assert np.abs(probs - ref[0]).max() <= 1e-4
    assert np.abs(corr - ref[1]).max() <= 1e-4
    with torch.inference_mode():  # the embeddings the evidence null reads (edge_sync.models.embeddings)
        ref_emb = [e.numpy() for e in student.embed(audio, video)]
    assert np.abs(audio_emb - ref_emb[0]).max() <= 1e-4 and np.abs(video_emb - ref_emb[1]).max() <= 1e-4


def test_fp16_halves_the_weights_and_keeps_per_frame_offsets(fp16, fp32, student, holdout):
    m = read_artifact(fp16).manifest
    # on the export's random inputs FP16 moves probabilities by under 1%; an argmax may still flip where two offsets
    # tie (one frame of 132 for the session-14 student), so agreement is bounded as for the other exporters
    quick = m["parity_quick"]
    assert m["precision"] == "fp16" and quick["max_abs_err"]["sync_probs"] <= 0.02, quick
    assert quick["frame_offset_agreement"] >= 0.95, quick
    assert (fp16 / "model.bin").stat().st_size <= 0.55 * (fp32 / "model.bin").stat().st_size
    probs = create(read_artifact(fp16), threads=2).run(*holdout)[0]
    ref = _torch(student, *holdout)[0]
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert np.abs(probs - ref).max() <= 0.02


def test_int8_is_calibrated_on_the_given_set(int8, calib, fp32):
    path, used = int8
    m = read_artifact(path).manifest
    assert m["precision"] == "int8" and m["runs_on"] == ["openvino"]
    assert m["calibration"]["id"] == calib.id and m["calibration"]["content_sha256"] == calib.sha256
    assert used and set(used) == {calib.path}  # NNCF drew its clips from this set, not the default one
    q = m["quantization"]
    assert q["tool"] == "nncf" and q["subset_size"] == len(calib) and q["quantizers"] > 0
    assert {"Softmax", "ReduceSum"} <= set(q["float_ops"])
    assert (path / "model.bin").stat().st_size <= 0.30 * (fp32 / "model.bin").stat().st_size


def test_int8_leaves_the_cross_modal_part_and_audio_input_float(int8):
    """Quantisers only on encoder ops and on the head's convolution inputs: none feeds the correlation, the
    similarity/logit sum or the softmax, and the MFCC input is not rounded to one 8-bit scale."""
    import openvino as ov

    model = ov.Core().read_model(str(int8[0] / "model.xml"))
    deps = ov_export._inputs_by_op(model)
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        users = {t.get_node().get_type_name() for t in op.output(0).get_target_inputs()}
        if len(deps[op.get_friendly_name()]) > 1:
            assert users == {"Convolution"}, (op.get_friendly_name(), users)
        src = op.input(0).get_source_output().get_node()
        assert "audio" not in src.output(0).get_names(), "the audio input is quantised"
    softmax = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Softmax")
    assert softmax.input(0).get_source_output().get_node().get_type_name() != "FakeQuantize"


def test_int8_agrees_with_pytorch_on_held_out_clips(int8, student, holdout):
    m = read_artifact(int8[0]).manifest
    assert m["parity_quick"]["calibration_clips"]["clip_offset_agreement"] >= 0.875
    probs = create(read_artifact(int8[0]), threads=2).run(*holdout)[0]
    ref = _torch(student, *holdout)[0]
    assert probs.shape == ref.shape and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    clip_agree = (probs.mean(-1).argmax(-1) == ref.mean(-1).argmax(-1)).mean()
    assert clip_agree >= 7 / 8
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_float_scope_is_the_cross_modal_part(fp32):
    import openvino as ov

    model = ov.Core().read_model(str(fp32 / "model.xml"))
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    scope = ov_export.float_scope(model)
    kinds = {types[n] for n in scope}
    assert {"Softmax", "ReduceSum", "Multiply"} <= kinds
    assert [types[n] for n in scope].count("Convolution") == 1  # the audio input layer; head convs stay INT8
    deps = ov_export._inputs_by_op(model)
    assert all(len(deps[n]) == 2 or types[n] == "Convolution" for n in scope)


def test_bad_precision_is_refused_and_nothing_is_written(student, tmp_path):
    assert get_exporter("openvino").precisions == ("fp32", "fp16", "int8")
    with pytest.raises(EdgeSyncError, match="supports precisions fp32, fp16, int8, not 'int4'"):
        ov_export.export_openvino(student, tmp_path, "int4")
    assert not any(tmp_path.iterdir())
