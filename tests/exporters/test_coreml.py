"""CoreML export: names, flexible time ranges, stored weight dtypes per precision, honest manifests, and the
converted program's numbers.

CoreML prediction needs macOS, so on Linux the numbers come from a small numpy evaluator of the saved package's
MIL program (below): it checks what coremltools converted (at T other than the trace sample), not Apple's runtime.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools", reason="CoreML export needs coremltools: pip install 'edge-sync[coreml]'")

import edge_sync.exporters.coreml as cm  # noqa: E402  (registers the coreml target)
from edge_sync.artifact import read_artifact  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.exporters import get_exporter  # noqa: E402
from edge_sync.exporters.api import export  # noqa: E402
from edge_sync.exporters.common import DEFAULT_MAX_FRAMES, TimeRange  # noqa: E402
from edge_sync.exporters.onnx import sample_inputs  # noqa: E402
from edge_sync.models.io import load  # noqa: E402

ON_MAC = sys.platform == "darwin"
CUSTOM_RANGE = TimeRange(min_frames=2, opt_frames=50, max_frames=400)  # the fp16 artifact's range


# --- a numpy evaluator for the MIL ops these models convert to ---------------------------------------------
def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    """N-d grouped conv as one matmul per kernel tap (cheap for depthwise kernels, no im2col blow-up)."""
    k = weight.shape[2:]
    nd = len(k)
    strides = [1] * nd if strides is None else [int(s) for s in strides]
    dil = [1] * nd if dilations is None else [int(d) for d in dilations]
    if pad_type not in ("custom", "valid"):
        raise NotImplementedError(f"conv pad_type {pad_type}")
    widths = [(int(pad[2 * i]), int(pad[2 * i + 1])) if pad_type == "custom" else (0, 0) for i in range(nd)]
    xp = np.pad(x, [(0, 0), (0, 0)] + widths)
    n, c, g, o = x.shape[0], x.shape[1], int(groups), weight.shape[0]
    size = [(xp.shape[2 + i] - dil[i] * (k[i] - 1) - 1) // strides[i] + 1 for i in range(nd)]
    xg = xp.reshape(n, g, c // g, *xp.shape[2:])
    wg = weight.reshape(g, o // g, c // g, *k)
    out = np.zeros((n, g, o // g, int(np.prod(size))), np.float32)
    lead = (slice(None),) * 3
    for tap in np.ndindex(*k):
        window = tuple(slice(tap[i] * dil[i], tap[i] * dil[i] + strides[i] * (size[i] - 1) + 1, strides[i])
                       for i in range(nd))
        out += np.matmul(wg[lead + tap][None], xg[lead + window].reshape(n, g, c // g, -1))
    out = out.reshape(n, o, *size)
    return out if bias is None else out + bias.reshape((1, -1) + (1,) * nd)


def _max_pool(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False):
    nd = len(kernel_sizes)
    if ceil_mode or pad_type not in ("custom", "valid"):
        raise NotImplementedError(f"max_pool pad_type {pad_type} ceil_mode {ceil_mode}")
    widths = [(int(pad[2 * i]), int(pad[2 * i + 1])) if pad_type == "custom" else (0, 0) for i in range(nd)]
    xp = np.pad(x, [(0, 0)] * (x.ndim - nd) + widths, constant_values=-np.inf)
    k, s = [int(v) for v in kernel_sizes], [int(v) for v in strides]
    size = [(xp.shape[x.ndim - nd + i] - k[i]) // s[i] + 1 for i in range(nd)]
    out = None
    for tap in np.ndindex(*k):
        window = xp[(Ellipsis,) + tuple(slice(tap[i], tap[i] + s[i] * (size[i] - 1) + 1, s[i]) for i in range(nd))]
        out = window if out is None else np.maximum(out, window)
    return out


def _slice(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    index = []
    for i in range(len(begin)):
        if squeeze_mask is not None and squeeze_mask[i]:
            index.append(int(begin[i]))
            continue
        lo = None if begin_mask is not None and begin_mask[i] else int(begin[i])
        hi = None if end_mask is not None and end_mask[i] else int(end[i])
        index.append(slice(lo, hi, None if stride is None else int(stride[i])))
    return x[tuple(index)]


def _reshape(x, shape):
    shape = [x.shape[i] if int(s) == 0 else int(s) for i, s in enumerate(shape)]
    return x.reshape(shape)


def _pad(x, pad, mode="constant", constant_val=0.0):
    if mode != "constant":
        raise NotImplementedError(f"pad mode {mode}")
    pairs = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    return np.pad(x, [(0, 0)] * (x.ndim - len(pairs)) + pairs, constant_values=constant_val)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


def _dequantize(quantized_data, zero_point, scale, axis):
    shape = [1] * quantized_data.ndim
    shape[int(axis)] = -1
    zp = np.reshape(zero_point, shape) if np.ndim(zero_point) else zero_point
    sc = np.reshape(scale, shape) if np.ndim(scale) else scale
    return (quantized_data.astype(np.float32) - np.asarray(zp, np.float32)) * np.asarray(sc, np.float32)


def _reduce(fn):
    return lambda x, axes=None, keep_dims=False: fn(x, axis=None if axes is None else tuple(int(a) for a in axes),
                                                     keepdims=bool(keep_dims))


MIL_OPS = {
    "conv": _conv, "max_pool": _max_pool, "slice_by_index": _slice, "reshape": _reshape, "pad": _pad,
    "softmax": _softmax, "constexpr_affine_dequantize": _dequantize,
    "cast": lambda x, dtype: x,  # the output var's dtype is applied below
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in perm]),
    "thresholded_relu": lambda x, alpha=1.0: np.where(x > alpha, x, 0),
    "sigmoid_hard": lambda x, alpha=0.2, beta=0.5: np.clip(alpha * x + beta, 0, 1),
    "relu": lambda x: np.maximum(x, 0),
    "squeeze": lambda x, axes=None: np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in axes)),
    "mul": lambda x, y: x * y, "add": lambda x, y: x + y, "sub": lambda x, y: x - y,
    "real_div": lambda x, y: x / y, "maximum": lambda x, y: np.maximum(x, y),
    "minimum": lambda x, y: np.minimum(x, y), "equal": lambda x, y: np.equal(x, y),
    "select": lambda cond, a, b: np.where(cond, a, b),
    "shape": lambda x: np.array(x.shape, np.int32),
    "tile": lambda x, reps: np.tile(x, [int(r) for r in reps]),
    "gather": lambda x, indices, axis=0, batch_dims=0, validate_indices=False: np.take(x, indices, axis=int(axis)),
    "concat": lambda values, axis, interleave=False: np.concatenate([np.atleast_1d(v) for v in values],
                                                                      axis=int(axis)),
    "stack": lambda values, axis: np.stack(values, axis=int(axis)),
    "reduce_sum": _reduce(np.sum), "reduce_mean": _reduce(np.mean),
    "reduce_l2_norm": _reduce(lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))),
}


def load_program(package: Path):
    """The saved package's MIL program (pymil), read back from disk with its weight blobs."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = ct.utils.load_spec(str(package))
    weights = package / "Data" / "com.apple.CoreML" / "weights"
    return milproto_load(spec, spec.specificationVersion, str(weights))


def run_program(program, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Evaluate op by op in float32, rounding every result to its var's dtype (float16 programs round like
    CoreML's float16 storage; accumulation order differs, so expect small float16 differences)."""
    from coremltools.converters.mil.mil import types

    def np_dtype(var):
        return types.nptype_from_builtin(var.dtype)

    def value(v):
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if v.name in env:
            return env[v.name]
        return np.asarray(v.val)

    def as_compute(x):
        return x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype == np.float16 else x

    function = program.functions["main"]
    env: dict[str, np.ndarray] = dict(feeds)
    for op in function.operations:
        if op.op_type == "const":
            env[op.outputs[0].name] = np.asarray(op.outputs[0].val)
            continue
        if op.op_type not in MIL_OPS:
            raise NotImplementedError(f"the test's MIL evaluator has no {op.op_type}; add it to MIL_OPS")
        args = {k: value(v) for k, v in op.inputs.items()}
        args = {k: [as_compute(x) for x in v] if isinstance(v, list) else as_compute(v) for k, v in args.items()}
        out = np.asarray(MIL_OPS[op.op_type](**args))
        env[op.outputs[0].name] = out.astype(np_dtype(op.outputs[0]))
    return [env[o.name] for o in function.outputs]


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student():
    return load("student")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The bundled student at every precision (through the public export API and its registry)."""
    out = tmp_path_factory.mktemp("coreml")
    ranges = {"fp32": None, "fp16": CUSTOM_RANGE, "int8": None}
    return {p: export("student", "coreml", p, out, time_range=ranges[p])[0] for p in cm.PRECISIONS}


def package_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / cm.PACKAGE).rglob("*") if f.is_file())


# --- tests -----------------------------------------------------------------------------------------------
def test_registered_with_its_precisions_and_extra():
    info = get_exporter("coreml")
    assert info.precisions == ("fp32", "fp16", "int8") and info.extra == "export,coreml"
    assert info.modules == ("torch", "coremltools") and info.available()


@pytest.mark.parametrize("precision", cm.PRECISIONS)
def test_manifest_fields_and_limits(artifacts, precision):
    art = read_artifact(artifacts[precision])  # verifies every hashed file inside the .mlpackage
    m = art.manifest
    assert artifacts[precision].name == f"student.coreml-{precision}"
    assert m["target"] == "coreml" and m["precision"] == precision and m["entry"] == {"model": "model.mlpackage"}
    assert art.file("model").is_dir() and any(f.endswith("weights/weight.bin") for f in m["files"])
    assert m["tools"]["coremltools"].startswith("9") and m["runs_on"] == ["coreml (macOS)"]
    assert m["source"]["kind"] == "student" and m["source"]["checkpoint_sha256"]
    expected = CUSTOM_RANGE if precision == "fp16" else TimeRange(1, 100, DEFAULT_MAX_FRAMES)
    assert m["time_range"] == {**expected.__dict__, "dynamic": True}
    assert m["coreml"]["compute_precision"] == {"fp32": "float32"}.get(precision, "float16")
    assert m["coreml"]["flexible_shapes"]["audio_tied_to_video"] is False
    assert "4*T" in m["limits"] and "Neural Engine" in m["limits"] and "macOS" in m["limits"]
    if not ON_MAC:
        assert m["parity_quick"]["status"].startswith("not run: CoreML prediction needs macOS")
        assert "not measured" in m["limits"]
    assert any("ranges" in c for c in m["parity_quick"]["package_checks"])


@pytest.mark.parametrize("precision", cm.PRECISIONS)
def test_saved_spec_has_names_float32_io_and_flexible_time(artifacts, precision):
    import coremltools as ct

    spec = ct.utils.load_spec(str(artifacts[precision] / cm.PACKAGE))
    assert spec.WhichOneof("Type") == "mlProgram"
    inputs = {f.name: f.type.multiArrayType for f in spec.description.input}
    assert list(inputs) == ["audio", "video"]
    assert [f.name for f in spec.description.output] == ["sync_probs", "correlation", "audio_emb", "video_emb"]
    lo, hi = (2, 400) if precision == "fp16" else (1, DEFAULT_MAX_FRAMES)
    ranges = {k: [(r.lowerBound, r.upperBound) for r in a.shapeRange.sizeRanges] for k, a in inputs.items()}
    assert ranges["video"] == [(1, 1), (3, 3), (lo, hi), (112, 112), (112, 112)]
    assert ranges["audio"] == [(1, 1), (1, 1), (13, 13), (4 * lo, 4 * hi)]
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert all(a.dataType == float32 for a in inputs.values())
    assert all(f.type.multiArrayType.dataType == float32 for f in spec.description.output)


def test_weights_are_stored_at_the_requested_precision(artifacts, student):
    summary = {p: cm.package_summary(artifacts[p] / cm.PACKAGE)["weight_elements"] for p in cm.PRECISIONS}
    params = sum(p.numel() for p in student.parameters())
    assert summary["fp32"].get("float16", 0) == 0 and summary["fp32"]["float32"] >= 0.95 * params
    assert summary["fp16"].get("float32", 0) == 0 and summary["fp16"]["float16"] >= 0.95 * params
    assert summary["int8"]["int8"] >= 0.9 * params and summary["int8"].get("float32", 0) == 0
    blob = {p: (artifacts[p] / cm.PACKAGE / "Data/com.apple.CoreML/weights/weight.bin").stat().st_size
            for p in cm.PRECISIONS}
    assert blob["fp16"] < 0.55 * blob["fp32"] and blob["int8"] < 0.32 * blob["fp32"]
    assert package_bytes(artifacts["int8"]) < 0.5 * package_bytes(artifacts["fp32"])


def test_int8_manifest_says_exactly_what_was_quantized(artifacts, student):
    m = read_artifact(artifacts["int8"]).manifest
    convs = [mod for mod in student.modules() if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))]
    weights = m["quantization"]["weights"]
    assert weights["quantized"] == "conv weights" and "per output channel" in weights["scheme"]
    assert weights["tensors"] == len(convs)
    assert weights["params"] == sum(c.weight.numel() for c in convs)
    program = load_program(artifacts["int8"] / cm.PACKAGE)
    ops = program.functions["main"].operations
    assert sum(op.op_type == "constexpr_affine_dequantize" for op in ops) == len(convs)
    if not ON_MAC:
        assert m["quantization"]["activations"]["status"].startswith("skipped") and "macOS" in \
            m["quantization"]["activations"]["status"]
        assert "calibration" not in m and m["coreml"]["minimum_deployment_target"] == "iOS16"
        assert "weight-only" in m["limits"]


TOLERANCE = {"fp32": (1e-4, 1e-4, 1.0), "fp16": (0.03, 0.01, 0.95), "int8": (0.25, 0.05, 0.8)}  # probs, corr, agreement
# max abs error of a unit embedding element (session 28 saw 8e-4 for fp16 and 0.011 for weight-only int8)
EMBEDDING_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "int8": 0.04}


@pytest.mark.parametrize("precision", cm.PRECISIONS)
def test_converted_program_matches_pytorch_at_other_lengths(artifacts, student, precision):
    """T=37 differs from the trace sample (25) and the default shape: a frozen time axis fails here."""
    program = load_program(artifacts[precision] / cm.PACKAGE)
    probs_tol, corr_tol, agree_min = TOLERANCE[precision]
    for frames in (25, 37):
        audio, video = sample_inputs(student, frames, seed=frames)
        with torch.inference_mode():
            ref = [x.numpy() for x in student(audio, video)]
        probs, corr, audio_emb, video_emb = run_program(program, {"audio": audio.numpy(), "video": video.numpy()})
        assert probs.shape == corr.shape == (1, 31, frames)
        assert np.abs(probs - ref[0]).max() <= probs_tol
        assert np.abs(corr - ref[1]).max() <= corr_tol
        assert (probs.argmax(1) == ref[0].argmax(1)).mean() >= agree_min
        with torch.inference_mode():  # the embeddings the evidence null reads (edge_sync.models.embeddings)
            ref_emb = [e.numpy() for e in student.embed(audio, video)]
        assert np.abs(audio_emb - ref_emb[0]).max() <= EMBEDDING_TOLERANCE[precision]
        assert np.abs(video_emb - ref_emb[1]).max() <= EMBEDDING_TOLERANCE[precision]


@pytest.mark.skipif(not ON_MAC, reason="CoreML prediction needs macOS")
@pytest.mark.parametrize("precision", cm.PRECISIONS)
def test_macos_parity_in_manifest(artifacts, precision):
    parity = read_artifact(artifacts[precision]).manifest["parity_quick"]
    probs_tol, _, agree_min = TOLERANCE[precision]
    assert parity["status"] == "ran" and parity["frame_offset_agreement"] >= agree_min
    assert parity["max_abs_err"]["sync_probs"] <= probs_tol


def test_time_range_is_bounded_and_int8_calibrates_only_on_macos(student):
    assert cm.resolve_time_range(student, None) == TimeRange(1, 100, DEFAULT_MAX_FRAMES)
    assert cm.resolve_time_range(student, TimeRange(1, 100, None)).max_frames == DEFAULT_MAX_FRAMES
    assert cm.resolve_time_range(student, TimeRange(1, 1500, None)).max_frames == 1500
    mac, linux = cm.plan_for("int8", "darwin"), cm.plan_for("int8", "linux")
    assert mac.calibrate_activations and mac.deployment_target == "iOS17"
    assert not linux.calibrate_activations and linux.quantize_weights


def test_int8_report_records_a_requested_set_it_could_not_apply():
    class Calib:
        id = "set-1"

        def reference(self):
            return {"id": self.id}

    linux = cm.int8_report({"tensors": 1}, cm.plan_for("int8", "linux"), Calib(), 0)["activations"]
    assert linux["status"].startswith("skipped") and linux["requested_calibration"] == {"id": "set-1"}
    mac = cm.int8_report({"tensors": 1}, cm.plan_for("int8", "darwin"), Calib(), 32)["activations"]
    assert mac["status"] == "calibrated" and mac["samples"] == 32 and mac["calibration_set"] == "set-1"


def test_unsupported_precision_is_refused_before_writing(tmp_path):
    with pytest.raises(EdgeSyncError, match="supports precisions fp32, fp16, int8"):
        export("student", "coreml", "int4", tmp_path)
    assert not any(tmp_path.iterdir())


def test_package_check_refuses_a_wrong_package(artifacts, student):
    from edge_sync.models.embeddings import with_embeddings

    summary = json.loads(json.dumps(cm.package_summary(artifacts["fp16"] / cm.PACKAGE)))
    exported = with_embeddings(student)  # as export_coreml converts it
    cm.check_package(summary, exported, CUSTOM_RANGE, "fp16")
    with pytest.raises(EdgeSyncError, match="shape ranges"):
        cm.check_package(summary, exported, TimeRange(1, 100, DEFAULT_MAX_FRAMES), "fp16")
    with pytest.raises(EdgeSyncError, match="int8"):
        cm.check_package(summary, exported, CUSTOM_RANGE, "int8")
    with pytest.raises(EdgeSyncError, match="outputs are sync_probs, correlation"):
        cm.check_package(summary, student, CUSTOM_RANGE, "fp16")  # a package with other outputs than the model's


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_teacher_exports_and_its_program_matches_pytorch(tmp_path, precision):
    path = export("teacher", "coreml", precision, tmp_path)[0]
    m = read_artifact(path).manifest
    assert len(m["parity_quick"]["package_checks"]) == 8
    teacher = load("teacher")
    audio, video = sample_inputs(teacher, 37, seed=37)
    with torch.inference_mode():
        ref = [x.numpy() for x in teacher(audio, video)]
    probs, corr, *_ = run_program(load_program(path / cm.PACKAGE), {"audio": audio.numpy(), "video": video.numpy()})
    probs_tol, corr_tol, agree_min = TOLERANCE[precision]
    assert np.abs(probs - ref[0]).max() <= probs_tol and np.abs(corr - ref[1]).max() <= corr_tol
    assert (probs.argmax(1) == ref[0].argmax(1)).mean() >= agree_min


def test_a_student_with_motion_blocks_converts_with_a_flexible_time_axis(tmp_path):
    """FrameMotion2d regroups frames into clips; written with a product of traced sizes it did not convert."""
    from edge_sync.models.io import save_checkpoint
    from edge_sync.models.student import StudentConfig, X3DStudent
    from tests.models.helpers import randomise_batchnorm

    model = randomise_batchnorm(X3DStudent(StudentConfig(video_trunk_kwargs={"motion_stages": [1, 2],
                                                                             "temporal_kernel": 3})))
    save_checkpoint(model, tmp_path / "motion.pt")
    program = load_program(export(tmp_path / "motion.pt", "coreml", "fp32", tmp_path / "art")[0] / cm.PACKAGE)
    audio, video = sample_inputs(model, 37, seed=37)
    with torch.inference_mode():
        ref = model(audio, video)[1].numpy()
    corr = run_program(program, {"audio": audio.numpy(), "video": video.numpy()})[1]
    assert np.abs(corr - ref).max() <= 1e-4
