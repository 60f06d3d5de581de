"""Static TensorRT compatibility check of an ONNX graph, for machines that have no TensorRT.

TensorRT cannot be installed where edge-sync artifacts are made (DESIGN.md, "Toolchain facts"), so a TensorRT
artifact would otherwise first meet TensorRT's ONNX parser on the user's device. This module checks, without
TensorRT, what the parser and builder are documented to refuse: operators, opsets, data types, the Q/DQ form of
explicit INT8 quantization, and that the time axis is dynamic and matches the optimisation profile the artifact
records. A clean report is no proof that an engine builds (tactics, memory and plugins are only known on the
device), but every rule here is one a real export has tripped, or one the parser states.

Source of the operator table: the ``docs/operators.md`` support matrix of github.com/onnx/onnx-tensorrt for
TensorRT 10.15 (opset 9 to 24), with the Q/DQ rules of TensorRT's "Working with Quantized Types" / explicit
quantization guide (symmetric INT8: zero points 0, strictly positive scales, per-tensor activations, per-channel
weights along the output-channel axis). Recheck both when TensorRT moves; the table is data, below.
onnx + numpy only: no torch, no onnxruntime.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._deps import require
from edge_sync.errors import EdgeSyncError
from edge_sync.spec import AUDIO_INPUTS, ModelContract

log = logging.getLogger(__name__)

# --- the table (data, not prose) -------------------------------------------------------------------------
TENSORRT_VERSION = "10.15"
TABLE_SOURCE = "onnx/onnx-tensorrt docs/operators.md, TensorRT 10.15 support matrix (opset 9-24)"
OPSET_RANGE = (9, 24)

_F = ("FP32", "FP16", "BF16")
_FI = _F + ("INT32", "INT64")
_FIB = _FI + ("BOOL",)
_F2 = ("FP32", "FP16")
_CONST = _F + ("FP8", "FP4", "INT4", "INT32", "INT64", "BOOL")
_REDUCE = {f"Reduce{k}": _FI for k in ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean", "Min", "Prod", "Sum",
                                       "SumSquare")}

# Operator -> data types of its first input (or output, where it has none) that the parser accepts.
SUPPORTED_OPS: dict[str, tuple[str, ...]] = {
    **{op: _F for op in (
        "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "Ceil", "Celu",
        "Clip", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "Dropout", "Einsum", "Elu", "Erf", "Exp", "Floor",
        "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "GRU", "HardSigmoid",
        "HardSwish", "Hardmax", "ImageScaler", "InstanceNormalization", "IsInf", "LayerNormalization", "LeakyRelu",
        "Log", "LogSoftmax", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "MaxPool",
        "MeanVarianceNormalization", "ParametricSoftplus", "PRelu", "QuantizeLinear", "RandomNormal",
        "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Reciprocal", "Resize", "RMSNormalization",
        "RNN", "RotaryEmbedding", "Round", "ScaledTanh", "Scan", "Selu", "Sigmoid", "Sin", "Sinh", "Softmax",
        "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Upsample")},
    **{op: _FI for op in (
        "Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater", "GreaterOrEqual", "IsNaN",
        "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg", "Pad", "Pow", "Range", "Relu", "Scatter",
        "ScatterElements", "ScatterND", "Shrink", "Sign", "SpaceToDepth", "Sub", "Sum", "TopK")},
    **{op: _FIB for op in (
        "Concat", "Expand", "EyeLike", "Flatten", "Gather", "GatherElements", "GatherND", "Identity", "If", "Loop",
        "OneHot", "Reshape", "ReverseSequence", "Shape", "Size", "Slice", "Split", "Squeeze", "Tile", "Transpose",
        "Trilu", "Unsqueeze", "Where")},
    **{op: _F2 for op in ("BlackmanWindow", "DeformConv", "GridSample", "HammingWindow", "HannWindow", "Mish",
                          "NonMaxSuppression", "NonZero", "RoiAlign")},
    **{op: ("BOOL",) for op in ("And", "Not", "Or", "Xor")},
    **_REDUCE,
    "Attention": _F + ("INT8", "FP8"),
    "Cast": _FI + ("UINT8", "BOOL"), "CastLike": _FI + ("UINT8", "BOOL"),
    "Constant": _CONST, "ConstantOfShape": _CONST,
    "DequantizeLinear": ("INT8", "FP8", "FP4", "INT4"),
    "Gelu": _F + ("INT8", "INT32", "INT64"),
    "Mean": _F + ("FP8", "INT32", "INT64"),
    "STFT": ("FP32",),
    "TensorScatter": _F + ("INT32",),
}
# Listed as not supported by the parser (anything absent from both tables is unknown to it as well).
UNSUPPORTED_OPS = frozenset((
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im",
    "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear",
    "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial",
    "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv",
    "QLinearMatMul", "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence",
    "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer", "Unique"))
OP_FIX_HINTS = {
    **{op: "quantize in QDQ format (QuantFormat.QDQ), not QOperator: TensorRT reads only Q/DQ pairs"
       for op in ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")},
    "DynamicQuantizeLinear": "use static Q/DQ with calibrated scales (edge_sync.exporters.onnx_int8.quantize_qdq)",
}
# Inputs the parser needs as build-time constants (initializer or Constant): op -> ((index, name, severity), ...).
# "error": the table says "must be an initializer"; "warning": "resolvable to a constant" (it may fold).
CONSTANT_INPUTS: dict[str, tuple[tuple[int, str, str], ...]] = {
    **{op: ((1, "axes", "error"),) for op in _REDUCE},
    "Squeeze": ((1, "axes", "warning"),), "Unsqueeze": ((1, "axes", "warning"),),
    "CumSum": ((1, "axis", "error"),), "OneHot": ((1, "depth", "error"),),
    "Dropout": ((2, "training_mode", "error"),), "STFT": ((1, "frame_step", "error"), (2, "window", "error")),
}
# Attribute values the parser accepts: op -> {attribute: (ONNX default, allowed values)}.
ATTRIBUTE_RULES: dict[str, dict[str, tuple[Any, tuple[Any, ...]]]] = {
    "TopK": {"sorted": (1, (1,))},
    "Resize": {"mode": ("nearest", ("nearest", "linear")),
               "coordinate_transformation_mode": ("half_pixel", ("half_pixel", "pytorch_half_pixel",
                                                                  "tf_half_pixel_for_nn", "asymmetric",
                                                                  "align_corners")),
               "antialias": (0, (0,)), "keep_aspect_ratio_policy": ("stretch", ("stretch",))},
    "ScatterND": {"reduction": ("none", ("none",))},
    "LSTM": {"input_forget": (0, (0,)), "layout": (0, (0,))},
}
POOLS = ("AveragePool", "MaxPool", "LpPool")

# Tensor data types: what the parser takes anywhere, only at the network's edges, or not at all.
ONNX_TO_TRT = {"FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "INT32": "INT32", "INT64": "INT64",
               "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "FLOAT8E4M3FN": "FP8", "INT4": "INT4",
               "FLOAT4E2M1": "FP4", "DOUBLE": "DOUBLE"}
IO_ONLY_DTYPES = ("UINT8",)  # the table: UINT8 only as a network input or output
# DOUBLE is listed with "limited support" (cast down to float, clamped): edge-sync refuses it, because the engine
# would then compute something other than the graph onnxruntime checked for parity.
REFUSED_DTYPES = ("DOUBLE",)
QUANT_TYPES = ("INT8", "FP8", "INT4", "FP4")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHT_AXIS = {"Conv": lambda rank, node: 0, "ConvTranspose": lambda rank, node: 1,
               "MatMul": lambda rank, node: rank - 1,
               "Gemm": lambda rank, node: 0 if _attr(node, "transB", 0) else 1}


class TensorRTCompatError(EdgeSyncError, ValueError):
    """An ONNX graph breaks a documented TensorRT rule; the message lists each failure and its fix."""


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" (the parser or builder refuses it) or "warning" (builds, but check it)
    rule: str
    node: str
    message: str
    hint: str = ""

    def line(self) -> str:
        hint = f" -> {self.hint}" if self.hint else ""
        return f"[{self.severity}] {self.rule} at {self.node}: {self.message}{hint}"


@dataclass
class CompatReport:
    """What the check found; ``ok`` means no errors (warnings allowed)."""

    issues: list[Issue] = field(default_factory=list)
    opset: int | None = None
    op_counts: dict[str, int] = field(default_factory=dict)
    tensorrt: str = TENSORRT_VERSION
    source: str = TABLE_SOURCE

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def rules_failed(self) -> set[str]:
        return {i.rule for i in self.errors}

    def to_dict(self) -> dict[str, Any]:
        """Manifest form: verdict, provenance of the rules, and every issue."""
        return {"ok": self.ok, "tensorrt": self.tensorrt, "source": self.source, "opset": self.opset,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "issues": [asdict(i) for i in self.issues], "op_counts": dict(sorted(self.op_counts.items()))}

    def summary(self, limit: int = 25) -> str:
        lines = [i.line() for i in self.errors + self.warnings]
        more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
        head = f"TensorRT {self.tensorrt} check: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        return "\n  ".join([head, *lines[:limit]]) + more


# --- optimisation profile ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeRange:
    """One input's min/opt/max shapes in a TensorRT optimisation profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_any(cls, value: ShapeRange | Mapping[str, Iterable[int]]) -> ShapeRange:
        if isinstance(value, ShapeRange):
            return value
        try:
            return cls(*(tuple(int(d) for d in value[k]) for k in ("min", "opt", "max")))
        except (KeyError, TypeError, ValueError) as exc:
            raise TensorRTCompatError(f"an optimisation profile entry needs integer min/opt/max shapes, got "
                                      f"{value!r}") from exc


def _time_steps(token: str) -> int | None:
    """Steps per video frame of a contract dim ('T' -> 1, '4T' -> 4, '640T' -> 640), None for other dims."""
    m = re.fullmatch(r"(\d*)T", token)
    return None if m is None else int(m.group(1) or 1)


def profile_shapes(contract: ModelContract, min_frames: int, opt_frames: int, max_frames: int,
                   batch: int = 1) -> dict[str, ShapeRange]:
    """The profile TensorRT needs for ``contract``'s inputs: batch fixed, time from min to max frames, and
    the audio's time axis tied to the video's (4 MFCC steps per frame)."""
    out = {}
    for spec in contract.inputs:
        shapes = []
        for frames in (min_frames, opt_frames, max_frames):
            dims = []
            for token in spec.shape:
                steps = _time_steps(token)
                dims.append(batch if token == "B" else frames * steps if steps is not None else int(token))
            shapes.append(tuple(dims))
        out[spec.name] = ShapeRange(*shapes)
    return out


def trtexec_shapes(profile: Mapping[str, ShapeRange], which: str) -> str:
    """trtexec's ``name:1x2x3,name2:...`` form of one corner (min/opt/max) of a profile."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in getattr(r, which))}" for name, r in profile.items())


def check_profile(profile: Mapping[str, Any], contract: ModelContract) -> list[Issue]:
    """The profile alone: every contract input present, ranks and fixed dims as the contract says,
    min <= opt <= max, a finite max, and audio time = steps x video time at each corner."""
    issues: list[Issue] = []
    ranges = {}
    for spec in contract.inputs:
        if spec.name not in profile or profile[spec.name] is None:
            issues.append(Issue("error", "profile", spec.name, "the optimisation profile has no shapes for this "
                                "input (TensorRT needs min/opt/max for every dynamic input)",
                                "export again with a time range: min/opt/max frames"))
            continue
        try:
            r = ShapeRange.from_any(profile[spec.name])
        except TensorRTCompatError as exc:
            issues.append(Issue("error", "profile", spec.name, str(exc), "give integer min/opt/max shapes"))
            continue
        ranges[spec.name] = r
        issues += _check_range(spec.name, spec.shape, r, contract)
    issues += _check_time_tie(ranges, contract)
    return issues


def _check_range(name: str, tokens: tuple[str, ...], r: ShapeRange, contract: ModelContract) -> list[Issue]:
    if not len(r.min) == len(r.opt) == len(r.max) == len(tokens):
        return [Issue("error", "profile", name, f"profile ranks {len(r.min)}/{len(r.opt)}/{len(r.max)} differ from "
                      f"the contract's {list(tokens)}", "rebuild the profile from the contract")]
    issues = []
    for axis, token in enumerate(tokens):
        lo, mid, hi = r.min[axis], r.opt[axis], r.max[axis]
        if not 1 <= lo <= mid <= hi:
            issues.append(Issue("error", "profile", name, f"axis {axis} ({token}) needs 1 <= min <= opt <= max, got "
                                f"{lo}/{mid}/{hi}", "fix the time range: 1 <= min-frames <= opt-frames <= max-frames"))
        elif token.isdigit() and not lo == mid == hi == int(token):
            issues.append(Issue("error", "profile", name, f"axis {axis} is fixed at {token} by the contract, the "
                                f"profile gives {lo}/{mid}/{hi}", f"use {token} for min, opt and max"))
        elif token == "T" and lo < contract.min_frames:
            issues.append(Issue("error", "profile", name, f"min frames {lo} is below the model's minimum of "
                                f"{contract.min_frames}", f"use min-frames >= {contract.min_frames}"))
    return issues


def _check_time_tie(ranges: Mapping[str, ShapeRange], contract: ModelContract) -> list[Issue]:
    """audio time must be exactly steps x video frames at min, opt and max (the graph ties them)."""
    audio_spec, video_spec = contract.inputs
    if audio_spec.name not in ranges or video_spec.name not in ranges:
        return []
    steps = AUDIO_INPUTS[contract.audio_input].steps_per_frame
    a_axis = next(i for i, t in enumerate(audio_spec.shape) if _time_steps(t))
    v_axis = video_spec.shape.index("T")
    issues = []
    for corner in ("min", "opt", "max"):
        a = getattr(ranges[audio_spec.name], corner)
        v = getattr(ranges[video_spec.name], corner)
        if len(a) > a_axis and len(v) > v_axis and a[a_axis] != steps * v[v_axis]:
            issues.append(Issue("error", "profile", audio_spec.name, f"{corner} audio time {a[a_axis]} != {steps} x "
                                f"video frames {v[v_axis]}", f"audio time is {steps}*T: use {steps * v[v_axis]}"))
        if len(a) and len(v) and a[0] != v[0]:
            issues.append(Issue("error", "profile", audio_spec.name, f"{corner} batch {a[0]} differs from video's "
                                f"{v[0]}", "use the same batch for both inputs"))
    return issues


# --- graph access ------------------------------------------------------------------------------------------
class _Graph:
    """Lookups the rules share: constants, dtypes after shape inference, consumers, local functions."""

    def __init__(self, model: Any) -> None:
        onnx = require("onnx", "export", "checking ONNX graphs for TensorRT")
        self.onnx = onnx
        self.model = model
        self.inference_error = ""
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except (onnx.shape_inference.InferenceError, ValueError, RuntimeError) as exc:
            # a graph shape inference cannot follow is still checked, with fewer types
            inferred, self.inference_error = model, str(exc).splitlines()[0][:200]
        self.graph = inferred.graph
        self.consts: dict[str, Any] = {i.name: i for i in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.consts[node.output[0]] = node
        self.types: dict[str, int] = {}
        for vi in list(self.graph.input) + list(self.graph.value_info) + list(self.graph.output):
            if vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type.tensor_type.elem_type
        for init in self.graph.initializer:
            self.types[init.name] = init.data_type
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.functions = {(f.domain, f.name): f for f in model.functions}

    def dtype_name(self, tensor: str) -> str | None:
        code = self.types.get(tensor)
        return None if code is None else self.onnx.TensorProto.DataType.Name(code)

    def const(self, tensor: str) -> np.ndarray | None:
        """The value of a constant tensor (initializer or Constant output), None when computed at run time."""
        src = self.consts.get(tensor)
        if src is None:
            return None
        if hasattr(src, "op_type"):  # a Constant node
            for a in src.attribute:
                if a.name == "value":
                    return self.onnx.numpy_helper.to_array(a.t)
            return None
        return self.onnx.numpy_helper.to_array(src)

    def const_dtype(self, tensor: str) -> str | None:
        src = self.consts.get(tensor)
        if src is None:
            return self.dtype_name(tensor)
        if hasattr(src, "op_type"):
            value = next((a.t for a in src.attribute if a.name == "value"), None)
            return None if value is None else self.onnx.TensorProto.DataType.Name(value.data_type)
        return self.onnx.TensorProto.DataType.Name(src.data_type)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _label(node: Any, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def _walk(graph: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every node with a label, descending into If/Loop/Scan bodies (the parser imports those too)."""
    for i, node in enumerate(graph.node):
        label = prefix + _label(node, i)
        yield label, node
        for a in node.attribute:
            if a.type == a.GRAPH:
                yield from _walk(a.g, label + "/")
            elif a.type == a.GRAPHS:
                for g in a.graphs:
                    yield from _walk(g, label + "/")


# --- rules -------------------------------------------------------------------------------------------------
def check_opset(g: _Graph) -> tuple[int | None, list[Issue]]:
    lo, hi = OPSET_RANGE
    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        return None, [Issue("error", "opset", "model", "no default-domain opset import", "re-export the model")]
    if not lo <= opset <= hi:
        return opset, [Issue("error", "opset", "model", f"opset {opset} is outside TensorRT {TENSORRT_VERSION}'s "
                             f"range {lo}-{hi}", f"export with an opset in {lo}-{hi} (onnx.version_converter can "
                             "convert an existing graph)")]
    return opset, []


def check_ops(g: _Graph) -> tuple[dict[str, int], list[Issue]]:
    """Every op (subgraphs and local functions included) is one the parser imports."""
    counts: dict[str, int] = {}
    issues = []
    for label, node in _walk(g.graph):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        if (node.domain, node.op_type) in g.functions:
            issues += _check_function(g, label, g.functions[(node.domain, node.op_type)])
            continue
        if node.domain not in ("", "ai.onnx"):
            issues.append(Issue("error", "op-support", label, f"{node.domain}::{node.op_type} is a custom-domain op",
                                "export with standard ONNX ops only, or ship a TensorRT plugin for it"))
        elif node.op_type not in SUPPORTED_OPS:
            listed = "listed as unsupported" if node.op_type in UNSUPPORTED_OPS else "not in the support matrix"
            issues.append(Issue("error", "op-support", label, f"{node.op_type} is {listed} by TensorRT's ONNX parser",
                                OP_FIX_HINTS.get(node.op_type, f"rewrite the model so the export avoids "
                                                 f"{node.op_type}, or provide a TensorRT plugin")))
    return counts, issues


def _check_function(g: _Graph, label: str, function: Any) -> list[Issue]:
    issues = []
    for node in function.node:
        if node.domain in ("", "ai.onnx") and node.op_type not in SUPPORTED_OPS:
            issues.append(Issue("error", "op-support", f"{label}/{node.op_type}", f"{node.op_type} inside local "
                                f"function {function.name} is not supported by TensorRT's ONNX parser",
                                "inline or rewrite the function with supported ops"))
    return issues


def check_dtypes(g: _Graph) -> list[Issue]:
    """Tensor types the network may hold: no float64/strings/complex/odd integer widths; UINT8 only at the
    edges. Q/DQ tensors are left to the Q/DQ rules. One issue per type, naming a few tensors."""
    qdq_tensors = set()
    for node in g.graph.node:
        if node.op_type in QDQ_OPS:
            qdq_tensors.update(node.input[2:3])
            if node.op_type == "QuantizeLinear":
                qdq_tensors.update(node.output)
            else:
                qdq_tensors.add(node.input[0])
    edges = {i.name for i in g.graph.input} | g.outputs
    bad: dict[str, list[str]] = {}
    for tensor in g.types:
        if tensor in qdq_tensors:
            continue
        name = g.dtype_name(tensor)
        trt = ONNX_TO_TRT.get(name)
        if trt in REFUSED_DTYPES or trt is None or (trt in IO_ONLY_DTYPES and tensor not in edges):
            bad.setdefault(name, []).append(tensor)
    issues = []
    for name, tensors in sorted(bad.items()):
        where = ", ".join(sorted(tensors)[:3]) + (f" (+{len(tensors) - 3} more)" if len(tensors) > 3 else "")
        hint = ("cast to float32 in the model before export: TensorRT only casts DOUBLE down with clamping, so the "
                "engine would differ from the graph checked here" if name == "DOUBLE" else
                "UINT8 is allowed only as a network input/output" if name == "UINT8" else
                "use a type TensorRT supports (FP32/FP16/BF16/INT32/INT64/BOOL, INT8 via Q/DQ)")
        issues.append(Issue("error", "dtype", where, f"{len(tensors)} tensor(s) of type {name}", hint))
    return issues


def check_op_dtypes(g: _Graph) -> list[Issue]:
    """Each op's first input (output for Constant-like ops) has a type the table lists for that op."""
    seen: dict[tuple[str, str], list[str]] = {}
    for i, node in enumerate(g.graph.node):
        allowed = SUPPORTED_OPS.get(node.op_type)
        if allowed is None or node.domain not in ("", "ai.onnx") or node.op_type in QDQ_OPS:
            continue  # unknown ops are reported by check_ops, Q/DQ by check_qdq
        tensor = node.input[0] if node.input and node.input[0] else (node.output[0] if node.output else "")
        trt = ONNX_TO_TRT.get(g.dtype_name(tensor) or "")
        if trt is None or trt in REFUSED_DTYPES or trt in allowed:
            continue  # unknown or already reported by check_dtypes
        seen.setdefault((node.op_type, trt), []).append(_label(node, i))
    return [Issue("error", "op-dtype", nodes[0] + (f" (+{len(nodes) - 1} more)" if len(nodes) > 1 else ""),
                  f"{op} on {trt} input: TensorRT supports {op} on {', '.join(SUPPORTED_OPS[op])}",
                  f"cast the input of {op} to a supported type")
            for (op, trt), nodes in sorted(seen.items())]


def check_restrictions(g: _Graph) -> list[Issue]:
    """Per-op restrictions from the table: constant inputs, attribute values, pooling ranks, extra outputs."""
    issues = []
    for i, node in enumerate(g.graph.node):
        label = _label(node, i)
        for index, what, severity in CONSTANT_INPUTS.get(node.op_type, ()):
            if len(node.input) > index and node.input[index] and g.const(node.input[index]) is None:
                issues.append(Issue(severity, "constant-input", label, f"{node.op_type}'s `{what}` is computed at run "
                                    "time; TensorRT needs it as a build-time constant",
                                    f"make `{what}` an initializer (constant-fold the graph before export)"))
        for name, (default, allowed) in ATTRIBUTE_RULES.get(node.op_type, {}).items():
            value = _attr(node, name, default)
            if value not in allowed:
                issues.append(Issue("error", "op-restriction", label, f"{node.op_type} {name}={value!r} is not "
                                    f"supported (allowed: {', '.join(map(str, allowed))})",
                                    f"export {node.op_type} with {name} in {allowed}"))
        issues += _node_specific(g, node, label)
    return issues


def _node_specific(g: _Graph, node: Any, label: str) -> list[Issue]:
    issues = []
    if node.op_type in POOLS:
        kernel = _attr(node, "kernel_shape", [])
        if len(kernel) not in (2, 3):
            issues.append(Issue("error", "op-restriction", label, f"{node.op_type} over {len(kernel)} spatial axes; "
                                "TensorRT pools 2D or 3D only", "reshape to 2D (e.g. [B,C,T] -> [B,C,T,1]) around it"))
        if any(d != 1 for d in _attr(node, "dilations", [])):
            issues.append(Issue("error", "op-restriction", label, f"{node.op_type} with dilations", "use dilation 1"))
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        issues.append(Issue("error", "op-restriction", label, "MaxPool's Indices output is unsupported",
                            "drop the indices output (return_indices=False)"))
    if node.op_type == "LayerNormalization" and any(node.output[1:]):
        issues.append(Issue("error", "op-restriction", label, "only LayerNormalization's first output is supported",
                            "do not use the mean / inv-std outputs"))
    if node.op_type == "TopK" and len(node.input) > 1:
        k = g.const(node.input[1])
        if k is not None and int(np.max(k)) >= 3840:
            issues.append(Issue("error", "op-restriction", label, f"TopK K={int(np.max(k))} >= 3840", "use K < 3840"))
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        mode = g.const(node.input[2])
        if mode is not None and bool(np.any(mode)):
            issues.append(Issue("error", "op-restriction", label, "Dropout in training mode",
                                "export the model in eval() mode"))
    if node.op_type == "Constant" and any(a.name in ("sparse_value", "value_string", "value_strings")
                                          for a in node.attribute):
        issues.append(Issue("error", "op-restriction", label, "sparse or string Constant",
                            "use a dense numeric constant"))
    return issues


def check_qdq(g: _Graph) -> list[Issue]:
    """Explicit quantization as TensorRT reads it: symmetric signed types (zero point 0, INT8 not UINT8),
    constant, finite, strictly positive scales; per-tensor activations; per-channel weights only along the
    consuming op's output-channel axis; every Q feeding only DQ."""
    issues = []
    for i, node in enumerate(g.graph.node):
        if node.op_type not in QDQ_OPS or node.domain not in ("", "ai.onnx"):
            continue
        label = _label(node, i)
        issues += _qdq_types(g, node, label)
        issues += _qdq_scale_and_axis(g, node, label)
        if node.op_type == "QuantizeLinear":
            issues += _q_feeds_dq(g, node, label)
    return issues


def _qdq_types(g: _Graph, node: Any, label: str) -> list[Issue]:
    issues = []
    zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zp is not None:
        value = g.const(zp)
        if value is None:
            issues.append(Issue("error", "qdq-zero-point", label, "the zero point is computed at run time",
                                "make it a constant 0 initializer"))
        elif np.any(value.astype(np.float64) != 0):
            issues.append(Issue("error", "qdq-zero-point", label, f"zero point {_brief(value)} is not 0: TensorRT "
                                "quantizes symmetrically", "re-quantize with symmetric activations and weights "
                                "(quantize_qdq(..., symmetric_activations=True))"))
        qtype = g.const_dtype(zp)
    elif node.op_type == "QuantizeLinear":
        out_dtype = _attr(node, "output_dtype", 0)
        qtype = g.onnx.TensorProto.DataType.Name(out_dtype) if out_dtype else "UINT8"
        if not out_dtype:
            issues.append(Issue("error", "qdq-dtype", label, "QuantizeLinear without a zero point quantizes to UINT8 "
                                "in ONNX (onnxruntime clamps negatives) but to INT8 in TensorRT",
                                "add an INT8 zero point of 0 so both compute the same"))
            qtype = None  # reported; do not repeat as UINT8 below
    else:
        qtype = g.const_dtype(node.input[0])
    trt = ONNX_TO_TRT.get(qtype or "")
    if qtype is not None and trt not in QUANT_TYPES:
        hint = ("only activation types (INT8/FP8/INT4) may be dequantized: keep Conv/Gemm biases float "
                "(onnxruntime quantize_static extra_options QuantizeBias=False)" if qtype == "INT32" else
                "quantize to signed INT8 (activation_type=QInt8, symmetric)" if qtype == "UINT8" else
                f"use one of {', '.join(QUANT_TYPES)}")
        issues.append(Issue("error", "qdq-dtype", label, f"{node.op_type} on {qtype}; TensorRT quantizes only to "
                            f"{', '.join(QUANT_TYPES)}", hint))
    return issues


def _qdq_scale_and_axis(g: _Graph, node: Any, label: str) -> list[Issue]:
    scale = g.const(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return [Issue("error", "qdq-scale", label, "the scale is computed at run time",
                      "calibrate offline and store the scale as an initializer")]
    issues = []
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        issues.append(Issue("error", "qdq-scale", label, f"scale {_brief(scale)} must be finite and > 0",
                            "recalibrate: a zero or negative scale comes from a tensor that was constant or empty "
                            "on the calibration set"))
    if scale.ndim >= 2:
        return issues + [Issue("error", "qdq-axis", label, f"block quantization (scale rank {scale.ndim})",
                               "use per-tensor or per-channel INT8 scales")]
    if scale.size <= 1:
        return issues
    data = g.const(node.input[0])
    if data is None:
        return issues + [Issue("error", "qdq-axis", label, f"per-channel ({scale.size}) scale on an activation; "
                               "TensorRT quantizes activations per tensor", "use one scale per activation tensor")]
    axis = _attr(node, "axis", 1)
    axis = axis + data.ndim if axis < 0 else axis
    if not 0 <= axis < data.ndim or data.shape[axis] != scale.size:
        return issues + [Issue("error", "qdq-axis", label, f"{scale.size} scales on axis {axis} of a "
                               f"{list(data.shape)} weight", "one scale per output channel")]
    return issues + _weight_axis(g, node, label, axis, data.ndim)


def _weight_axis(g: _Graph, node: Any, label: str, axis: int, rank: int) -> list[Issue]:
    """Per-channel weights: along the output channels of the op that consumes them (through DQ for a Q)."""
    out = node.output[0]
    consumers = list(g.consumers.get(out, []))
    if node.op_type == "QuantizeLinear":
        consumers = [c for dq in consumers for c in g.consumers.get(dq.output[0], [])]
    issues = []
    for consumer in consumers:
        rule = WEIGHT_AXIS.get(consumer.op_type)
        if rule is None:
            issues.append(Issue("warning", "qdq-axis", label, f"per-channel weights feed {consumer.op_type}; TensorRT "
                                "takes per-channel scales for Conv, ConvTranspose, MatMul and Gemm weights",
                                "quantize this tensor per tensor"))
        elif rule(rank, consumer) != axis:
            issues.append(Issue("error", "qdq-axis", label, f"{consumer.op_type} weights quantized along axis {axis}; "
                                f"TensorRT needs axis {rule(rank, consumer)} (output channels)",
                                f"quantize per channel on axis {rule(rank, consumer)}"))
    return issues


def _q_feeds_dq(g: _Graph, node: Any, label: str) -> list[Issue]:
    out = node.output[0]
    others = [c.op_type for c in g.consumers.get(out, []) if c.op_type != "DequantizeLinear"]
    if others or out in g.outputs:
        what = ", ".join(others) if others else "a graph output"
        return [Issue("error", "qdq-pairing", label, f"quantized tensor feeds {what}; TensorRT needs each "
                      "QuantizeLinear followed by DequantizeLinear", "export Q/DQ pairs (QDQ format)")]
    return []


def check_time_axes(g: _Graph, contract: ModelContract, profile: Mapping[str, ShapeRange] | None) -> list[Issue]:
    """Inputs as the contract says, with a symbolic T on video and audio = steps*T, unless the profile pins T."""
    issues = []
    inputs = {i.name: i for i in g.graph.input if i.name not in g.consts}
    video_symbol = None
    for spec in reversed(contract.inputs):  # video first: audio's time must be tied to its symbol
        vi = inputs.get(spec.name)
        if vi is None:
            issues.append(Issue("error", "contract-shape", spec.name, f"the graph has no input {spec.name!r} (has "
                                f"{', '.join(inputs) or 'none'})", "export with input names audio, video"))
            continue
        if vi.type.tensor_type.elem_type != g.onnx.TensorProto.FLOAT:
            issues.append(Issue("error", "contract-shape", spec.name, "input is not float32",
                                "keep float32 inputs (keep_io_types for FP16)"))
        dims = list(vi.type.tensor_type.shape.dim)
        if len(dims) != len(spec.shape):
            issues.append(Issue("error", "contract-shape", spec.name, f"rank {len(dims)}, the contract says "
                                f"{list(spec.shape)}", "re-export from the contract's model"))
            continue
        pinned = profile.get(spec.name) if profile else None
        if pinned is not None and len(pinned.min) != len(dims):
            pinned = None  # a rank mismatch is reported by check_profile
        for axis, (dim, token) in enumerate(zip(dims, spec.shape)):
            issue, symbol = _check_dim(spec.name, axis, dim, token, pinned, contract, video_symbol)
            if symbol is not None and spec.name == contract.inputs[1].name and token == "T":
                video_symbol = symbol
            if issue is not None:
                issues.append(issue)
    for spec in contract.outputs:
        if spec.name not in g.outputs:
            issues.append(Issue("error", "contract-shape", spec.name, "graph output missing",
                                "export with outputs sync_probs, correlation"))
    return issues


def _check_dim(name: str, axis: int, dim: Any, token: str, pinned: ShapeRange | None, contract: ModelContract,
               video_symbol: str | None) -> tuple[Issue | None, str | None]:
    """One input axis against its contract token; returns an issue (or None) and the axis' symbol."""
    static = dim.dim_value if dim.HasField("dim_value") else None
    symbol = dim.dim_param or None
    steps = _time_steps(token)
    if token.isdigit():
        if static is not None and static != int(token):
            return Issue("error", "contract-shape", name, f"axis {axis} is {static}, the contract says {token}",
                         "re-export from the contract's model"), symbol
        return None, symbol
    if token == "B":
        if static is not None and pinned is not None and static != pinned.min[axis]:
            return Issue("error", "contract-shape", name, f"batch fixed at {static}, the profile uses "
                         f"{pinned.min[axis]}", "export with a dynamic batch"), symbol
        return None, symbol
    if steps is None:
        return None, symbol
    if static is not None:
        if pinned is not None and pinned.min[axis] == pinned.max[axis] == static:
            return None, symbol
        return Issue("error", "dynamic-time", name, f"time axis {axis} is fixed at {static}; the artifact promises "
                     "any clip length in its time range", "re-export with a dynamic T (torch.export.Dim) and tie "
                     f"audio time to {steps}*T"), symbol
    if symbol is None:
        return Issue("warning", "dynamic-time", name, f"time axis {axis} has no name; cannot verify it is tied to "
                     "video T", "export with named dynamic axes"), symbol
    if steps > 1 and video_symbol is not None:
        factor = _time_factor(symbol, video_symbol)
        if factor is None:
            if symbol == video_symbol:
                return Issue("error", "dynamic-time", name, f"audio time is {symbol}, the same as video frames; the "
                             f"contract says {steps}*T", f"tie the audio axis to {steps}*T"), symbol
            return Issue("warning", "dynamic-time", name, f"audio time {symbol!r} is not tied to video's "
                         f"{video_symbol!r} in the graph (the profile ties them)", f"export with audio time "
                         f"{steps}*{video_symbol}"), symbol
        if factor != steps:
            return Issue("error", "dynamic-time", name, f"audio time is {symbol}, the contract says {steps}*T",
                         f"tie the audio axis to {steps}*T"), symbol
    return None, symbol


def _time_factor(symbol: str, video_symbol: str) -> int | None:
    """k for an axis named 'k*T' or 'T*k' (T = video's symbol), else None."""
    parts = symbol.replace(" ", "").split("*")
    if len(parts) == 2 and video_symbol in parts:
        other = parts[1] if parts[0] == video_symbol else parts[0]
        return int(other) if other.isdigit() else None
    return None


def merge_issues(issues: list[Issue]) -> list[Issue]:
    """One issue per distinct finding, naming the first node and how many more share it (a quantizer repeats
    the same mistake on every layer; forty identical lines hide the one that differs)."""
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for i in issues:
        groups.setdefault((i.severity, i.rule, i.message, i.hint), []).append(i.node)
    return [Issue(sev, rule, nodes[0] + (f" (+{len(nodes) - 1} more)" if len(nodes) > 1 else ""), msg, hint)
            for (sev, rule, msg, hint), nodes in groups.items()]


def _brief(value: np.ndarray) -> str:
    flat = np.asarray(value).ravel()
    return str(flat[:4].tolist()) + ("..." if flat.size > 4 else "")


# --- entry points ------------------------------------------------------------------------------------------
def _load(model: Any) -> Any:
    onnx = require("onnx", "export", "checking ONNX graphs for TensorRT")
    if isinstance(model, (str, Path)):
        return onnx.load(str(model), load_external_data=True)
    return model


def check_graph(model: Any, contract: ModelContract | None = None,
                profile: Mapping[str, Any] | None = None) -> CompatReport:
    """Check an ONNX model (path or ModelProto) against TensorRT's documented support, and its inputs against
    ``contract`` and the optimisation ``profile`` (``{input: ShapeRange or {"min","opt","max"}}``), if given."""
    contract = contract or ModelContract()
    g = _Graph(_load(model))
    report = CompatReport()
    report.opset, issues = check_opset(g)
    report.op_counts, op_issues = check_ops(g)
    ranges = _usable_ranges(profile)
    profile_issues = check_profile(profile, contract) if profile is not None else []
    report.issues = merge_issues(issues + op_issues + check_dtypes(g) + check_op_dtypes(g) + check_restrictions(g)
                                 + check_qdq(g) + check_time_axes(g, contract, ranges) + profile_issues)
    if g.inference_error:
        report.issues.append(Issue("warning", "shape-inference", "model", f"shape inference failed "
                                   f"({g.inference_error}); type checks saw only declared tensors",
                                   "run onnx.shape_inference on the graph to see why"))
    log.info("TensorRT %s static check: %d error(s), %d warning(s)", TENSORRT_VERSION, len(report.errors),
             len(report.warnings))
    return report


def _usable_ranges(profile: Mapping[str, Any] | None) -> dict[str, ShapeRange] | None:
    """The well-formed entries of a profile (malformed ones are reported by check_profile)."""
    if profile is None:
        return None
    ranges = {}
    for name, value in profile.items():
        try:
            ranges[name] = ShapeRange.from_any(value)
        except TensorRTCompatError:
            continue
    return ranges


def require_compatible(model: Any, contract: ModelContract | None = None,
                       profile: Mapping[str, Any] | None = None) -> CompatReport:
    """:func:`check_graph`, raising :class:`TensorRTCompatError` that lists every failure and its fix."""
    report = check_graph(model, contract, profile)
    if not report.ok:
        raise TensorRTCompatError(f"the ONNX graph would not build with TensorRT:\n  {report.summary()}")
    return report
