"""INT8 ONNX (QDQ): calibrated on an edge-sync set, correlation and softmax kept float, offsets kept."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from edge_sync.artifact import read_artifact  # noqa: E402
from edge_sync.calibration import CalibrationError, load_calibration_set  # noqa: E402
from edge_sync.data.synthetic import make_clip  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.exporters.api import export  # noqa: E402
from edge_sync.exporters.onnx_int8 import chunk_size, downstream_nodes, input_convs, quantize_qdq  # noqa: E402
from edge_sync.spec import LEGACY_FACE  # noqa: E402


@pytest.fixture(scope="module")
def calib(tiny_calib_path):
    return tiny_calib_path


@pytest.fixture(scope="module")
def artifacts(calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("art")
    return export("student", "onnx", "fp32", out)[0], export("student", "onnx", "int8", out, calib=calib)[0]


def _session(path):
    return ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])


def test_manifest_names_the_calibration_set_and_recipe(artifacts, calib):
    m = read_artifact(artifacts[1]).manifest
    ref = load_calibration_set(calib)
    assert m["precision"] == "int8" and m["calibration"]["id"] == ref.id
    assert m["calibration"]["content_sha256"] == ref.sha256
    q = m["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["method"] == "minmax" and q["quantized_nodes"] > 30


def test_int8_graph_is_qdq_with_int8_weights_and_float_similarity_part(artifacts):
    model = onnx.load(str(artifacts[1] / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 30
    int8_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 3]
    assert len(int8_weights) >= 30
    float_part = downstream_nodes(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name in float_part and node.op_type in ("Softmax", "ReduceSum"):
            assert producers[node.input[0]].op_type != "DequantizeLinear", node.name  # fed float, not INT8
    assert not model.graph.node[-1].op_type.endswith("QuantizeLinear")


def test_the_encoders_first_convs_stay_float(artifacts):
    """One stem conv per input (audio, video) is found through the data path (not through Shape nodes, which reach
    reshapes all over the dynamic-T graph) and is fed a float tensor and float weights in the INT8 graph."""
    fp32 = onnx.load(str(artifacts[0] / "model.onnx"))
    stems = input_convs(fp32)
    assert len(stems) == 2
    model = onnx.load(str(artifacts[1] / "model.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    weights = {i.name: i for i in model.graph.initializer}
    kept = [n for n in model.graph.node if n.name in stems]
    assert len(kept) == 2 and read_artifact(artifacts[1]).manifest["quantization"]["float_part"].endswith(
        "the first conv of each input")
    for conv in kept:
        assert all(producers[i].op_type != "DequantizeLinear" for i in conv.input if i in producers), conv.name
        assert weights[conv.input[1]].data_type == onnx.TensorProto.FLOAT, conv.name
    other = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in stems]
    assert sum(producers.get(n.input[1]) is not None and producers[n.input[1]].op_type == "DequantizeLinear"
               for n in other) > 30  # every other encoder conv is INT8


def test_int8_stems_int8_quantizes_the_first_convs_too(calib, tmp_path):
    """--int8-stems int8: no conv is left float in the encoders (a graph NPUs that run INT8 ops only can take)."""
    path = export("student", "onnx", "int8", tmp_path, calib=calib, int8_stems="int8")[0]
    model = onnx.load(str(path / "model.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    stems = [n for n in model.graph.node if n.name in input_convs(model)]  # seen through the Q/DQ pairs
    assert len(stems) == 2
    for conv in stems:
        assert producers[conv.input[0]].op_type == "DequantizeLinear", conv.name  # INT8 activations in
        assert producers[conv.input[1]].op_type == "DequantizeLinear", conv.name  # INT8 weights
    recipe = read_artifact(path).manifest["quantization"]
    assert recipe["stems"] == "int8" and "first conv" not in recipe["float_part"]
    with pytest.raises(EdgeSyncError, match="--int8-stems"):
        quantize_qdq(path / "model.onnx", tmp_path / "x.onnx", load_calibration_set(calib), stems="int4")


def test_int8_keeps_clip_offsets_of_fp32_on_hold_out_clips(artifacts):
    """Clip offsets agree on 11 of 12 synthetic hold-out clips, frame argmaxes on at least 90% of frames. With UINT8
    asymmetric activations the real-face student's INT8 kept only 90.0% here (89.7% vs 96.3% frame accuracy); with
    the symmetric INT8 activations the onnx target now uses, about 97%."""
    fp32, int8 = (_session(p) for p in artifacts)
    agree, frame_agree = [], []
    for i in range(12):
        clip = make_clip(1000, i, "holdout", frames=50)
        feed = {"audio": clip.audio[None], "video": clip.video[None]}
        p32 = fp32.run(["sync_probs"], feed)[0][0]
        p8 = int8.run(["sync_probs"], feed)[0][0]
        agree.append(p32.mean(-1).argmax() == p8.mean(-1).argmax())
        frame_agree.append((p32.argmax(0) == p8.argmax(0)).mean())
    assert np.mean(agree) >= 11 / 12
    assert np.mean(frame_agree) >= 0.9


def test_int8_runs_at_other_lengths(artifacts):
    sess = _session(artifacts[1])
    for frames in (7, 137):
        clip = make_clip(1000, 0, "holdout", frames=frames)
        probs, corr, audio_emb, video_emb = sess.run(None, {"audio": clip.audio[None], "video": clip.video[None]})
        assert probs.shape == corr.shape == (1, 31, frames)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
        # the embeddings stay float from their normalisation on (FLOAT_FROM): unit vectors, as the null assumes
        for emb in (audio_emb, video_emb):
            np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_symmetric_activations_have_zero_points_of_zero(artifacts, calib, tmp_path):
    out = tmp_path / "sym.onnx"
    fp32 = artifacts[0] / "model.onnx"
    recipe = quantize_qdq(fp32, out, load_calibration_set(calib), symmetric_activations=True, method="percentile")
    assert recipe["activations"] == "int8 symmetric"
    model = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and not any(z.any() for z in zero_points)
    assert {z.dtype for z in zero_points} == {np.dtype(np.int8)}  # biases stay float: TensorRT refuses INT32 DQ


def test_unknown_method_and_mismatched_set_are_refused(artifacts, calib, tmp_path):
    with pytest.raises(EdgeSyncError, match="calibration method"):
        quantize_qdq(artifacts[0] / "model.onnx", tmp_path / "x.onnx", load_calibration_set(calib), method="magic")
    crops = np.zeros((1, 4, 224, 224, 3), np.uint8)
    from edge_sync.calibration import write_calibration_set

    legacy_set = write_calibration_set(tmp_path / "legacy", np.zeros((1, 1, 13, 16), np.float32), crops,
                                       {"kind": "test"}, preprocessing=LEGACY_FACE)
    with pytest.raises(CalibrationError, match="legacy_face224"):
        export("student", "onnx", "int8", tmp_path / "art", calib=legacy_set)
    assert not (tmp_path / "art" / "student.onnx-int8").exists()


def _scales(path):
    model = onnx.load(str(path))
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")}


@pytest.mark.parametrize("method, tolerance", [("minmax", 0.0), ("percentile", 2e-3)])
def test_calibrating_in_chunks_gives_the_one_pass_ranges(artifacts, calib, tmp_path, method, tolerance):
    # chunks bound onnxruntime's memory (it keeps every intermediate tensor of what it is given): MinMax folds them
    # exactly; the histograms grow bins as later chunks need, so percentile moves by a fraction of a bin
    fp32, clips = artifacts[0] / "model.onnx", load_calibration_set(calib)
    one, chunked = tmp_path / "one.onnx", tmp_path / "chunked.onnx"
    quantize_qdq(fp32, one, clips, method=method, calib_chunk=len(clips))
    quantize_qdq(fp32, chunked, clips, method=method, calib_chunk=2)
    a, b = _scales(one), _scales(chunked)
    assert a.keys() == b.keys() and len(a) > 50
    worst = max(float(np.max(np.abs(b[k] - v) / np.abs(v))) for k, v in a.items())
    assert worst <= tolerance, worst


def test_chunks_divide_the_set():
    assert [chunk_size(n) for n in (64, 8, 6, 7, 1)] == [4, 4, 3, 1, 1]
