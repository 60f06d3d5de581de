"""Static TensorRT check: tiny graphs that break each rule fail with the rule named; the real exported
student and teacher graphs (FP32, typed FP16, symmetric INT8 Q/DQ) pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="pip install 'edge-sync[export]'")
from onnx import TensorProto, helper, numpy_helper

from edge_sync.exporters.tensorrt_check import (
    SUPPORTED_OPS,
    UNSUPPORTED_OPS,
    ShapeRange,
    TensorRTCompatError,
    check_graph,
    check_profile,
    profile_shapes,
    require_compatible,
)
from edge_sync.spec import ModelContract

CONTRACT = ModelContract()
PROFILE = profile_shapes(CONTRACT, 1, 100, 1000)
BUNDLED_ONNX = Path(__file__).resolve().parents[2] / "edge_sync" / "weights" / "student.onnx-fp32" / "model.onnx"


def const(name: str, value, dtype=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def graph(nodes=(), inits=(), audio_t="4*T", video_t="T", opset=20, extra_inputs=()) -> onnx.ModelProto:
    """A contract-shaped graph: audio [B,1,13,audio_t], video [B,3,video_t,112,112], outputs sync_probs and
    correlation, plus ``nodes`` reading audio/video (their outputs may dangle: only structure is checked)."""
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", 1, 13, audio_t]),
              helper.make_tensor_value_info("video", TensorProto.FLOAT, ["B", 3, video_t, 112, 112]),
              *extra_inputs]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("sync_probs", "correlation")]
    base = [helper.make_node("ReduceMean", ["video", "axes"], ["vmean"], name="mean"),
            helper.make_node("Identity", ["vmean"], ["sync_probs"], name="probs"),
            helper.make_node("Identity", ["vmean"], ["correlation"], name="corr")]
    g = helper.make_graph(base + list(nodes), "tiny", inputs, outputs,
                          [const("axes", [1, 3, 4], np.int64), *inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def qdq(zp=None, zp_dtype=np.int8, scale=0.05, q_name="q", x="video") -> tuple[list, list]:
    """Q -> DQ on an activation, with the given zero point (None: no zero-point input)."""
    inits = [const(f"{q_name}_s", scale, np.float32)]
    ins = [x, f"{q_name}_s"]
    if zp is not None:
        inits.append(const(f"{q_name}_zp", zp, zp_dtype))
        ins.append(f"{q_name}_zp")
    nodes = [helper.make_node("QuantizeLinear", ins, [f"{q_name}_out"], name=q_name),
             helper.make_node("DequantizeLinear", [f"{q_name}_out"] + ins[1:], [f"{q_name}_dq"], name=q_name + "_dq")]
    return nodes, inits


def conv_weight_dq(axis: int, scales: int = 8) -> tuple[list, list]:
    """Per-channel INT8 weights [8,3,3,3] dequantized along ``axis`` into a Conv on a quantized activation."""
    act_nodes, act_inits = qdq(zp=0)
    w = np.random.default_rng(0).integers(-127, 128, (8, 3, 3, 3)).astype(np.int8)
    inits = act_inits + [const("w_q", w), const("w_s", np.full(scales, 0.01), np.float32),
                         const("w_zp", np.zeros(scales), np.int8), const("axes2", [0, 1], np.int64)]
    nodes = act_nodes + [
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="w_dq", axis=axis),
        helper.make_node("Reshape", ["q_dq", "shape2d"], ["x2d"], name="to2d"),
        helper.make_node("Conv", ["x2d", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    inits.append(const("shape2d", [1, 3, 112, 112], np.int64))
    return nodes, inits


def rules(report) -> set[str]:
    return report.rules_failed()


def test_minimal_contract_graph_passes():
    report = check_graph(graph(), CONTRACT, PROFILE)
    assert report.ok, report.summary()
    assert report.opset == 20 and report.op_counts["ReduceMean"] == 1


@pytest.mark.parametrize("node, why", [
    (helper.make_node("Unique", ["audio"], ["u"], name="uniq"), "listed as unsupported"),
    (helper.make_node("ConvInteger", ["audio", "audio"], ["c"], name="convint"), "QDQ format"),
    (helper.make_node("Foo", ["audio"], ["f"], name="custom", domain="com.example"), "custom-domain"),
    (helper.make_node("NotAnOnnxOp", ["audio"], ["n"], name="mystery"), "not in the support matrix"),
])
def test_unsupported_ops_fail_naming_node_and_fix(node, why):
    report = check_graph(graph([node]), CONTRACT, PROFILE)
    assert rules(report) == {"op-support"}
    (issue,) = report.errors
    assert issue.node == node.name and why in issue.message + issue.hint


def test_unsupported_op_inside_a_subgraph_fails():
    body = helper.make_graph([helper.make_node("Unique", ["video"], ["u"], name="inner")], "then", [],
                             [helper.make_tensor_value_info("u", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["r"], name="branch", then_branch=body, else_branch=body)
    report = check_graph(graph([node], [const("cond", True, np.bool_)]), CONTRACT, PROFILE)
    assert any(i.rule == "op-support" and i.node.startswith("branch/") for i in report.errors)


@pytest.mark.parametrize("opset", [8, 25])
def test_opset_outside_tensorrt_range_fails(opset):
    report = check_graph(graph(opset=opset), CONTRACT, PROFILE)
    assert "opset" in rules(report)


def test_uint8_asymmetric_qdq_fails():
    nodes, inits = qdq(zp=128, zp_dtype=np.uint8)
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert {"qdq-zero-point", "qdq-dtype"} <= rules(report)
    assert any("QInt8" in i.hint for i in report.errors)


def test_int8_nonzero_zero_point_fails():
    nodes, inits = qdq(zp=3)
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert rules(report) == {"qdq-zero-point"}


def test_symmetric_int8_qdq_passes():
    nodes, inits = qdq(zp=0)
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert report.ok, report.summary()


def test_quantize_without_zero_point_is_uint8_in_onnx_and_fails():
    nodes, inits = qdq(zp=None)
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert "qdq-dtype" in rules(report)
    assert any("UINT8 in ONNX" in i.message for i in report.errors)


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan"), float("inf")])
def test_zero_negative_or_nonfinite_scales_fail(scale):
    nodes, inits = qdq(zp=0, scale=scale)
    assert rules(check_graph(graph(nodes, inits), CONTRACT, PROFILE)) == {"qdq-scale"}


def test_runtime_computed_scale_fails():
    nodes = [helper.make_node("QuantizeLinear", ["video", "s", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq")]
    extra = [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])]
    report = check_graph(graph(nodes, [const("zp", 0, np.int8)], extra_inputs=extra), CONTRACT, PROFILE)
    assert "qdq-scale" in rules(report)


def test_int32_bias_dequantize_fails_with_the_quantizer_fix():
    nodes = [helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["b"], name="bias_dq", axis=0)]
    inits = [const("b_q", [10, -20, 30], np.int32), const("b_s", [0.1, 0.1, 0.1], np.float32),
             const("b_zp", [0, 0, 0], np.int32)]
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    (issue,) = [i for i in report.errors if i.rule == "qdq-dtype"]
    assert "INT32" in issue.message and "QuantizeBias=False" in issue.hint


def test_per_channel_weights_along_output_channels_pass():
    nodes, inits = conv_weight_dq(axis=0)
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert report.ok, report.summary()


def test_per_channel_weights_on_the_wrong_axis_fail():
    nodes, inits = conv_weight_dq(axis=1, scales=3)
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert rules(report) == {"qdq-axis"}
    assert "axis 0" in report.errors[0].hint


def test_per_channel_activation_scales_fail():
    nodes, inits = qdq(zp=np.zeros(3), scale=np.full(3, 0.1))
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    assert "qdq-axis" in rules(report)
    assert any("per tensor" in i.message for i in report.errors)


def test_quantized_tensor_must_feed_dequantize_only():
    nodes, inits = qdq(zp=0)
    nodes.append(helper.make_node("Relu", ["q_out"], ["r"], name="int8_relu"))
    assert "qdq-pairing" in rules(check_graph(graph(nodes, inits), CONTRACT, PROFILE))


def test_float64_tensors_fail():
    nodes = [helper.make_node("Cast", ["video"], ["v64"], name="to_double", to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["v64", "two"], ["v64b"], name="mul64")]
    report = check_graph(graph(nodes, [const("two", 2.0, np.float64)]), CONTRACT, PROFILE)
    (issue,) = [i for i in report.errors if i.rule == "dtype"]
    assert "DOUBLE" in issue.message and "float32" in issue.hint


def test_string_and_internal_uint8_tensors_fail():
    nodes = [helper.make_node("Cast", ["video"], ["v8"], name="to_u8", to=TensorProto.UINT8),
             helper.make_node("Identity", ["v8"], ["v8b"], name="keep_u8")]
    report = check_graph(graph(nodes, [const("label", np.array(["x"], dtype=object))]), CONTRACT, PROFILE)
    messages = " ".join(i.message for i in report.errors if i.rule == "dtype")
    assert "UINT8" in messages and "STRING" in messages


def test_op_on_a_type_the_table_does_not_list_fails():
    nodes = [helper.make_node("Cast", ["video"], ["vi"], name="to_int", to=TensorProto.INT32),
             helper.make_node("Softmax", ["vi"], ["s"], name="int_softmax")]
    report = check_graph(graph(nodes), CONTRACT, PROFILE)
    assert rules(report) == {"op-dtype"} and report.errors[0].node == "int_softmax"


def test_static_time_axis_fails_when_a_range_is_promised():
    report = check_graph(graph(audio_t=100, video_t=25), CONTRACT, PROFILE)
    assert rules(report) == {"dynamic-time"}
    assert {i.node for i in report.errors} == {"audio", "video"}
    pinned = profile_shapes(CONTRACT, 25, 25, 25)
    assert check_graph(graph(audio_t=100, video_t=25), CONTRACT, pinned).ok


def test_audio_time_must_be_four_times_video_time():
    assert "dynamic-time" in rules(check_graph(graph(audio_t="T"), CONTRACT, PROFILE))
    assert "dynamic-time" in rules(check_graph(graph(audio_t="3*T"), CONTRACT, PROFILE))
    assert check_graph(graph(audio_t="T*4"), CONTRACT, PROFILE).ok
    loose = check_graph(graph(audio_t="A"), CONTRACT, PROFILE)
    assert loose.ok and [i.rule for i in loose.warnings] == ["dynamic-time"]


def test_wrong_input_names_or_fixed_dims_fail():
    model = graph()
    model.graph.input[1].type.tensor_type.shape.dim[3].dim_value = 96
    assert "contract-shape" in rules(check_graph(model, CONTRACT, PROFILE))
    model.graph.input[0].name = "mfcc"
    assert any("no input 'audio'" in i.message for i in check_graph(model, CONTRACT, PROFILE).errors)


def test_pooling_rank_constant_axes_and_attribute_restrictions():
    nodes = [helper.make_node("Reshape", ["audio", "s3"], ["a3"], name="flat"),
             helper.make_node("MaxPool", ["a3"], ["p"], name="pool1d", kernel_shape=[2]),
             helper.make_node("Shape", ["audio"], ["shp"], name="shape"),
             helper.make_node("Slice", ["shp", "zero", "one"], ["dyn_axes"], name="pick"),
             helper.make_node("ReduceSum", ["audio", "dyn_axes"], ["r"], name="sum_dyn"),
             helper.make_node("Resize", ["video", "", "scales"], ["z"], name="cubic", mode="cubic")]
    inits = [const("s3", [1, 13, -1], np.int64), const("zero", [0], np.int64), const("one", [1], np.int64),
             const("scales", [1, 1, 1, 2, 2], np.float32)]
    report = check_graph(graph(nodes, inits), CONTRACT, PROFILE)
    by_node = {i.node: i.rule for i in report.errors}
    assert by_node == {"pool1d": "op-restriction", "sum_dyn": "constant-input", "cubic": "op-restriction"}


def test_profile_must_tie_audio_to_video_and_be_ordered():
    good = {k: v.to_dict() for k, v in PROFILE.items()}
    assert check_profile(good, CONTRACT) == []
    bad = {**good, "audio": {"min": [1, 1, 13, 4], "opt": [1, 1, 13, 400], "max": [1, 1, 13, 1000]}}
    assert any("max audio time 1000 != 4 x video frames 1000" in i.message for i in check_profile(bad, CONTRACT))
    upside = profile_shapes(CONTRACT, 1, 100, 1000)
    upside["video"] = ShapeRange(upside["video"].max, upside["video"].opt, upside["video"].min)
    assert any("min <= opt <= max" in i.message for i in check_profile(upside, CONTRACT))
    assert any(i.node == "video" for i in check_profile({"audio": good["audio"]}, CONTRACT))
    assert any("integer min/opt/max" in i.message
               for i in check_profile({**good, "video": {"min": [1]}}, CONTRACT))
    wrong_bands = {**good, "audio": {k: [1, 1, 12, v[3]] for k, v in good["audio"].items()}}
    assert any("fixed at 13" in i.message for i in check_profile(wrong_bands, CONTRACT))


def test_check_graph_reports_a_bad_profile():
    bad = {**{k: v.to_dict() for k, v in PROFILE.items()}}
    bad["audio"] = {"min": [1, 1, 13, 4], "opt": [1, 1, 13, 400], "max": [1, 1, 13, 999]}
    assert "profile" in rules(check_graph(graph(), CONTRACT, bad))


def test_require_compatible_lists_every_failure_with_its_fix():
    nodes, inits = qdq(zp=128, zp_dtype=np.uint8)
    nodes.append(helper.make_node("Unique", ["audio"], ["u"], name="uniq"))
    with pytest.raises(TensorRTCompatError) as err:
        require_compatible(graph(nodes, inits, video_t=25, audio_t=100), CONTRACT, PROFILE)
    text = str(err.value)
    for expected in ("uniq", "Unique", "zero point", "UINT8", "dynamic-time", "->"):
        assert expected in text
    assert require_compatible(graph(), CONTRACT, PROFILE).ok


def test_op_table_is_consistent_and_covers_our_graphs():
    assert not set(SUPPORTED_OPS) & UNSUPPORTED_OPS
    model = onnx.load(str(BUNDLED_ONNX))
    assert {n.op_type for n in model.graph.node} <= set(SUPPORTED_OPS)


# --- the real graphs -----------------------------------------------------------------------------------
def test_bundled_student_fp32_passes():
    report = check_graph(BUNDLED_ONNX, CONTRACT, PROFILE)
    assert report.ok and not report.warnings, report.summary()
    assert report.to_dict()["ok"] and report.to_dict()["source"].startswith("onnx/onnx-tensorrt")


def test_student_typed_fp16_passes(tmp_path):
    from edge_sync.exporters.onnx import to_fp16

    to_fp16(BUNDLED_ONNX, tmp_path / "fp16.onnx")
    report = check_graph(tmp_path / "fp16.onnx", CONTRACT, PROFILE)
    assert report.ok and report.op_counts.get("Cast", 0) > 0, report.summary()


def test_teacher_export_passes(tmp_path):
    pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")
    from edge_sync.exporters.onnx import export_onnx_file
    from edge_sync.models.io import load

    path = tmp_path / "teacher.onnx"
    export_onnx_file(load("teacher"), path)
    report = check_graph(path, CONTRACT, PROFILE)
    assert report.ok, report.summary()
    assert report.op_counts["Conv"] > 0 and report.op_counts["MaxPool"] == 1


def test_student_int8_qdq_fails_with_int32_biases_and_passes_with_float_biases(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    from edge_sync.calibration import load_calibration_set, write_calibration_set
    from edge_sync.exporters.onnx_int8 import quantize_qdq
    from edge_sync.exporters.tensorrt import float_biases

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((3, 1, 13, 40)) * 10).astype(np.float32)
    crops = rng.integers(0, 256, (3, 10, 112, 112, 3), dtype=np.uint8)
    calib = load_calibration_set(write_calibration_set(tmp_path / "calib", audio, crops, {"kind": "random"}))
    quantize_qdq(BUNDLED_ONNX, tmp_path / "int8.onnx", calib, symmetric_activations=True)
    raw = check_graph(tmp_path / "int8.onnx", CONTRACT, PROFILE)
    if not raw.ok:  # onnxruntime dequantizes INT32 biases unless told QuantizeBias=False
        assert rules(raw) == {"qdq-dtype"} and "INT32" in raw.errors[0].message
    model = onnx.load(str(tmp_path / "int8.onnx"))
    float_biases(model)
    fixed = check_graph(model, CONTRACT, PROFILE)
    assert fixed.ok, fixed.summary()
    assert fixed.op_counts["QuantizeLinear"] > 0 and fixed.op_counts["DequantizeLinear"] > 0
