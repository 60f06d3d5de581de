"""CoreML artifacts: an ML Program (.mlpackage) converted by coremltools from the traced PyTorch model.

Facts this relies on (DESIGN.md "Toolchain facts", rechecked with coremltools 9.0 + torch 2.13):
- ``torch.jit.trace`` + ``ct.convert`` works with torch 2.13 even though coremltools 9 was tested up to 2.7, and
  keeps the time axis flexible with ``ct.RangeDim``. ML Programs refuse an unbounded range, so the artifact has
  a finite ``max_frames`` (default :data:`edge_sync.exporters.common.DEFAULT_MAX_FRAMES`).
- A RangeDim cannot be expressed as another one times 4, so audio time and video time are two separate ranges;
  the tie (audio steps = 4 T) is recorded in the manifest and enforced by the runtime backend.
- CoreML prediction (and so activation calibration, which runs the model) needs macOS. On Linux parity stops at
  checking the saved package (names, ranges, weight dtypes), and the manifest says so.
- INT8 is weight-only (per-channel symmetric int8 conv weights, fp16 compute) off macOS; on macOS the conv and
  add activations are also calibrated on the calibration set (W8A8, needs iOS 17).
"""
from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._deps import require
from edge_sync.artifact import write_artifact
from edge_sync.errors import EdgeSyncError
from edge_sync.exporters import ExporterInfo, register_exporter
from edge_sync.exporters.applicable import INT8
from edge_sync.models.embeddings import with_embeddings
from edge_sync.exporters.common import (TimeRange, base_manifest, bounded_time_range,
                                        check_precision, quick_parity, resolve_calibration)
from edge_sync.spec import AUDIO_INPUTS

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
PACKAGE = "model.mlpackage"
EXPORT_FRAMES = 25  # the sample T used to trace; RangeDim makes T flexible afterwards
PARITY_FRAMES = (7, 25, 100)  # macOS only: prediction at lengths other than the trace sample
CALIBRATION_CLIPS = 32  # macOS activation calibration: one prediction per clip with every activation as output
MACOS_ONLY = "CoreML prediction needs macOS"
MACOS_VERSION = {"iOS15": "macOS 12", "iOS16": "macOS 13", "iOS17": "macOS 14"}
NEEDS_MACOS = (f"not run: {MACOS_ONLY} (coremltools has no prediction runtime on {sys.platform}); "
               "the saved package was checked instead")


@dataclass(frozen=True)
class Plan:
    """How one precision is converted: compute precision, the oldest OS that runs it, what INT8 quantizes."""

    precision: str
    compute_precision: str  # "float32" | "float16"
    deployment_target: str  # a ct.target member name
    quantize_weights: bool = False
    calibrate_activations: bool = False


def plan_for(precision: str, platform: str = sys.platform) -> Plan:
    """FP32/FP16 target iOS 15 (the first with ML Programs). INT8 weights need iOS 16 (constexpr dequantize);
    calibrated activations need iOS 17 and a Mac to run the calibration on."""
    if precision == "fp32":
        return Plan("fp32", "float32", "iOS15")
    if precision == "fp16":
        return Plan("fp16", "float16", "iOS15")
    on_mac = platform == "darwin"
    return Plan("int8", "float16", "iOS17" if on_mac else "iOS16", quantize_weights=True,
                calibrate_activations=on_mac)


def resolve_time_range(model: Any, time_range: TimeRange | None) -> TimeRange:
    """The clip lengths the package accepts (ML Programs refuse unbounded ranges)."""
    return bounded_time_range(model, time_range, "CoreML needs a bounded time range")


# --- conversion ------------------------------------------------------------------------------------
def trace(model: Any, frames: int = EXPORT_FRAMES) -> Any:
    """TorchScript by tracing: coremltools' most tested torch frontend. torch 2.13 marks jit.trace deprecated;
    when it goes, torch.export with Dim("T") (audio 4*T) converts too (checked with coremltools 9.0: same ranges,
    same numbers; outputs then need renaming)."""
    torch = require("torch", "export", "CoreML export")
    from edge_sync.exporters.onnx import sample_inputs

    audio, video = sample_inputs(model.eval(), frames)
    with torch.no_grad():
        return torch.jit.trace(model, (audio, video), check_trace=False)


def input_types(model: Any, time_range: TimeRange) -> list[Any]:
    """``audio`` and ``video`` with batch 1 and flexible time (two ranges: CoreML cannot tie audio = 4 T)."""
    ct = require("coremltools", "coreml", "CoreML export")
    kind = AUDIO_INPUTS[model.contract.audio_input]
    steps, size = kind.steps_per_frame, model.contract.video.size
    lo, opt, hi = time_range.min_frames, time_range.opt_frames, time_range.max_frames
    a_dim = ct.RangeDim(lower_bound=steps * lo, upper_bound=steps * hi, default=steps * opt, symbol="audio_steps")
    v_dim = ct.RangeDim(lower_bound=lo, upper_bound=hi, default=opt, symbol="frames")
    a_shape = (1,) + tuple(int(d) for d in kind.shape[1:-1]) + (a_dim,)  # ("B", "1", "13", "4T") -> 1, 1, 13, A
    return [ct.TensorType(name="audio", shape=ct.Shape(a_shape), dtype=np.float32),
            ct.TensorType(name="video", shape=ct.Shape((1, 3, v_dim, size, size)), dtype=np.float32)]


def convert(model: Any, time_range: TimeRange, plan: Plan) -> Any:
    """Trace and convert to an in-memory ML Program with float32 inputs and outputs."""
    ct = require("coremltools", "coreml", "CoreML export")
    precision = {"float32": ct.precision.FLOAT32, "float16": ct.precision.FLOAT16}[plan.compute_precision]
    traced = trace(model)
    return ct.convert(traced, inputs=input_types(model, time_range),
                      outputs=[ct.TensorType(name=t.name, dtype=np.float32) for t in model.contract.outputs],
                      convert_to="mlprogram", compute_precision=precision,
                      minimum_deployment_target=getattr(ct.target, plan.deployment_target))


# --- INT8 ------------------------------------------------------------------------------------------
def conv_weights(mlmodel: Any) -> list[Any]:
    """The const ops that feed a conv's weight: the tensors INT8 quantizes (biases and other consts stay float,
    as in DESIGN.md's INT8 rule: quantize convs, keep mixed-range heads float)."""
    ops = mlmodel._mil_program.functions["main"].operations
    return [op.weight.op for op in ops if op.op_type == "conv" and op.weight.op is not None
            and op.weight.op.op_type == "const"]


def quantize_weights(mlmodel: Any) -> tuple[Any, dict[str, Any]]:
    """Per-output-channel symmetric int8 for every conv weight (weight_threshold 0: the student's depthwise
    kernels are small, and coremltools' default threshold of 2048 elements would silently keep them float)."""
    cto = require("coremltools.optimize", "coreml", "CoreML INT8 export")
    consts = conv_weights(mlmodel)
    if not consts:
        raise EdgeSyncError("INT8 CoreML export found no conv weights to quantize; export fp16 instead")
    cfg = cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                             weight_threshold=0)
    quantized = cto.coreml.linear_quantize_weights(
        mlmodel, cto.coreml.OptimizationConfig(op_name_configs={c.name: cfg for c in consts}))
    params = int(sum(np.prod(c.outputs[0].shape) for c in consts))
    report = {"scheme": "linear_symmetric int8, per output channel (coremltools.optimize.coreml."
                        "linear_quantize_weights)",
              "quantized": "conv weights", "tensors": len(consts), "params": params,
              "kept_float": "conv biases and every other constant (float16)"}
    return quantized, report


def calibration_samples(calib: Any, time_range: TimeRange, limit: int = CALIBRATION_CLIPS) -> list[dict]:
    """Calibration pairs as predict() dicts, clipped to the package's time range."""
    frames = min(max(calib.frames, time_range.min_frames), time_range.max_frames)
    return [{"audio": a, "video": v} for a, v in calib.pairs(frames=frames, limit=limit)]


def calibrate_activations(mlmodel: Any, samples: list[dict]) -> Any:
    """W8A8: coremltools runs the model on the samples (macOS only) and inserts int8 quantize/dequantize
    around conv and add; softmax and the correlation stay float16."""
    cto = require("coremltools.optimize", "coreml", "CoreML INT8 export")
    cfg = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8"))
    return cto.coreml.linear_quantize_activations(mlmodel, cfg, samples)


def int8_report(weights: dict[str, Any], plan: Plan, calib: Any, samples: int) -> dict[str, Any]:
    """What the manifest says INT8 means here: exactly what was quantized, and what was not and why."""
    if plan.calibrate_activations:
        activations = {"status": "calibrated", "dtype": "int8", "ops": "conv and add inputs/outputs",
                       "samples": samples, "calibration_set": calib.id}
    else:
        activations = {"status": f"skipped: activation calibration runs the model, and {MACOS_ONLY}; "
                                 "export on a Mac for W8A8", "dtype": "float16"}
        if calib is not None:
            activations["requested_calibration"] = calib.reference()
    return {"weights": weights, "activations": activations}


# --- checking the saved package --------------------------------------------------------------------
def _tensor_elements(value_type: Any) -> tuple[int, int] | None:
    """(dataType, element count) of a MIL proto tensor type with known dimensions, else None."""
    if value_type.WhichOneof("type") != "tensorType":
        return None
    tensor = value_type.tensorType
    sizes = [d.constant.size for d in tensor.dimensions]
    if any(d.WhichOneof("dimension") != "constant" for d in tensor.dimensions):
        return None
    return tensor.dataType, int(math.prod(sizes))


def weight_elements(spec: Any) -> dict[str, int]:
    """Elements stored per dtype over every constant of the program (const and constexpr_* ops): what
    actually ships, read back from the saved package rather than trusted from the converter."""
    mil = require("coremltools.proto.MIL_pb2", "coreml", "inspecting a CoreML package")
    counts: dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                if op.type != "const" and not op.type.startswith("constexpr_"):
                    continue
                for name, value in op.attributes.items():
                    found = _tensor_elements(value.type) if name != "name" else None
                    if found is None:
                        continue
                    dtype = mil.DataType.Name(found[0]).lower()
                    counts[dtype] = counts.get(dtype, 0) + found[1]
    return {k: counts[k] for k in sorted(counts)}


def _feature(feature: Any) -> dict[str, Any]:
    array = feature.type.multiArrayType
    ranges = [[r.lowerBound, r.upperBound] for r in array.shapeRange.sizeRanges]
    dtype = type(array).ArrayDataType.Name(array.dataType).lower()
    return {"name": feature.name, "dtype": dtype, "default_shape": list(array.shape), "ranges": ranges}


def package_summary(path: Path) -> dict[str, Any]:
    """Inputs (with their flexible ranges), outputs, program opset and stored weight dtypes of a saved package."""
    ct = require("coremltools", "coreml", "inspecting a CoreML package")
    spec = ct.utils.load_spec(str(path))
    functions = spec.mlProgram.functions
    return {"spec_version": spec.specificationVersion,
            "opset": sorted({k for f in functions.values() for k in f.block_specializations}),
            "inputs": [_feature(f) for f in spec.description.input],
            "outputs": [_feature(f) for f in spec.description.output],
            "weight_elements": weight_elements(spec)}


def expected_ranges(model: Any, time_range: TimeRange) -> dict[str, list[list[int]]]:
    steps = AUDIO_INPUTS[model.contract.audio_input].steps_per_frame
    lo, hi = time_range.min_frames, time_range.max_frames
    size = model.contract.video.size
    audio_fixed = [[1, 1]] + [[int(s), int(s)] for s in AUDIO_INPUTS[model.contract.audio_input].shape[1:-1]]
    return {"audio": audio_fixed + [[steps * lo, steps * hi]],
            "video": [[1, 1], [3, 3], [lo, hi], [size, size], [size, size]]}


def check_package(summary: dict[str, Any], model: Any, time_range: TimeRange, precision: str) -> list[str]:
    """Refuse a package whose names, ranges or stored weights are not what this export asked for.

    Returns the checks that passed, for the manifest; raises EdgeSyncError naming the first that failed."""
    def need(ok: bool, what: str) -> str:
        if not ok:
            raise EdgeSyncError(f"CoreML export produced a package that fails: {what} (package summary: "
                                f"{summary}); please report this with your coremltools and torch versions")
        return what

    inputs = {f["name"]: f for f in summary["inputs"]}
    outputs = [f["name"] for f in summary["outputs"]]
    weights = summary["weight_elements"]
    total = sum(n for k, n in weights.items() if k in ("float32", "float16", "int8"))
    passed = [need(list(inputs) == ["audio", "video"], "inputs are audio, video"),
              need(outputs == [t.name for t in model.contract.outputs],
                   f"outputs are {', '.join(t.name for t in model.contract.outputs)}")]
    want = expected_ranges(model, time_range)
    for name in ("audio", "video"):
        passed.append(need(inputs[name]["ranges"] == want[name],
                           f"{name} shape ranges are {want[name]} (time flexible, other axes fixed)"))
        passed.append(need(inputs[name]["dtype"] == "float32", f"{name} is float32"))
    passed.append(need(all(f["dtype"] == "float32" for f in summary["outputs"]), "outputs are float32"))
    dtype, least = {"fp32": ("float32", 0.99), "fp16": ("float16", 0.99), "int8": ("int8", 0.9)}[precision]
    got = weights.get(dtype, 0) / max(total, 1)
    passed.append(need(got >= least, f"at least {least:.0%} of stored weights are {dtype} (got {got:.1%})"))
    return passed


# --- parity ----------------------------------------------------------------------------------------
def coreml_parity(model: Any, path: Path, frames: Iterable[int] = PARITY_FRAMES) -> dict[str, Any]:
    """macOS: max abs error vs PyTorch and per-frame offset agreement at several T, on CoreML's CPU (the one
    compute unit whose precision is the package's own; GPU/ANE may compute in float16)."""
    ct = require("coremltools", "coreml", "CoreML parity")
    mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return quick_parity(model, lambda a, v: mlmodel.predict({"audio": a, "video": v}), frames,
                        "coremltools (CPU_ONLY)")


def parity_quick(model: Any, path: Path, checks: list[str]) -> dict[str, Any]:
    """Prediction parity where CoreML runs; elsewhere, say plainly that it did not run and what was checked."""
    if sys.platform == "darwin":
        return {**coreml_parity(model, path), "package_checks": checks}
    return {"status": NEEDS_MACOS, "package_checks": checks}


def limits_text(plan: Plan, time_range: TimeRange, steps: int) -> str:
    """The manifest's plain-language limits: what this artifact cannot do or was not proven to do."""
    target = f"{plan.deployment_target} / {MACOS_VERSION[plan.deployment_target]}"
    parts = [(f"Batch 1; video T in [{time_range.min_frames}, {time_range.max_frames}] frames (longer clips: the "
              "runtime windows them). Audio and video time are separate RangeDims because CoreML cannot tie audio "
              f"= {steps}*T: the caller must pass exactly {steps} audio steps per frame (edge-sync's coreml backend "
              "checks)."),
             (f"Range-flexible shapes: CoreML may use the Neural Engine only at the default shape "
              f"(T={time_range.opt_frames}); other lengths run on GPU or CPU."),
             f"Needs {target} or later; {MACOS_ONLY}."]
    if sys.platform != "darwin":
        parts.append("Exported off macOS: numeric parity with PyTorch was not measured, only the saved package "
                     "was checked (names, ranges, weight dtypes); check parity on a Mac before shipping.")
    if plan.precision == "int8" and not plan.calibrate_activations:
        parts.append("INT8 here is weight-only (int8 conv weights, float16 activations): activation calibration "
                     "needs macOS, so expect about FP16 speed with a smaller package.")
    if plan.compute_precision == "float16":
        parts.append("Computes in float16: expect small probability differences vs PyTorch float32.")
    return " ".join(parts)


def share(package: Path) -> None:
    """coremltools writes model.mlmodel as 0600; artifacts are copied to devices and shared, so make the
    package readable like the rest of the artifact."""
    for path in package.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


# --- the exporter ----------------------------------------------------------------------------------
def build_mlmodel(model: Any, plan: Plan, time_range: TimeRange, calib: Any) -> tuple[Any, dict[str, Any]]:
    """Convert, then quantize for INT8; returns the model and manifest facts about how it was made."""
    start = time.perf_counter()
    mlmodel = convert(model, time_range, plan)
    facts: dict[str, Any] = {"conversion_seconds": round(time.perf_counter() - start, 2)}
    if plan.quantize_weights:
        samples = calibration_samples(calib, time_range) if plan.calibrate_activations else []
        if samples:
            mlmodel = calibrate_activations(mlmodel, samples)
        mlmodel, weights = quantize_weights(mlmodel)
        facts["quantization"] = int8_report(weights, plan, calib, len(samples))
    facts["build_seconds"] = round(time.perf_counter() - start, 2)
    return mlmodel, facts


def coreml_facts(plan: Plan, time_range: TimeRange, steps: int, facts: dict[str, Any],
                 summary: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``coreml`` section: how the package was made and what it holds, for whoever runs it."""
    return {"model_type": "mlprogram", "minimum_deployment_target": plan.deployment_target,
            "compute_precision": plan.compute_precision, "io_dtype": "float32", "batch": 1,
            "flexible_shapes": {"kind": "range", "audio_tied_to_video": False, "audio_steps_per_frame": steps,
                                "default_frames": time_range.opt_frames},
            "frontend": f"torch.jit.trace at T={EXPORT_FRAMES} -> coremltools TorchScript frontend",
            **{k: v for k, v in facts.items() if k != "quantization"}, "package": summary}


def export_coreml(model: Any, out_dir: Path, precision: str = "fp32", name: str = "model",
                  source: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write ``NAME.coreml-PRECISION/`` with model.mlpackage and a manifest (with the embedding outputs where the
    model's embeddings are separable: :mod:`edge_sync.models.embeddings`).

    Options: ``time_range`` (TimeRange; default min..1000 frames, default shape 100), ``calib`` (INT8: a
    calibration set or its path; applied on macOS, recorded but unused elsewhere)."""
    check_precision("coreml", precision, PRECISIONS)
    require("torch", "export", "CoreML export")
    require("coremltools", "coreml", "CoreML export")
    model = with_embeddings(model.eval())
    plan = plan_for(precision)
    time_range = resolve_time_range(model, options.get("time_range"))
    steps = AUDIO_INPUTS[model.contract.audio_input].steps_per_frame
    calib = None
    if plan.calibrate_activations or (plan.quantize_weights and options.get("calib") is not None):
        calib = resolve_calibration(model, options.get("calib"))

    def write(tmp: Path) -> dict[str, Any]:
        mlmodel, facts = build_mlmodel(model.eval(), plan, time_range, calib)
        path = tmp / PACKAGE
        mlmodel.save(str(path))
        share(path)
        summary = package_summary(path)
        checks = check_package(summary, model, time_range, precision)
        log.info("CoreML %s package at %s: %s", precision, path, summary["weight_elements"])
        coreml = coreml_facts(plan, time_range, steps, facts, summary)
        out = {"entry": {"model": PACKAGE}, "coreml": coreml, "parity_quick": parity_quick(model, path, checks),
               "limits": limits_text(plan, time_range, steps)}
        if "quantization" in facts:
            out["quantization"] = facts["quantization"]
        return out

    used_calib = calib if plan.calibrate_activations else None
    manifest = base_manifest(model, source, tools=("coremltools",), runs_on=["coreml (macOS)"],
                             time_range=time_range, calibration=used_calib)
    return write_artifact(out_dir, name, "coreml", precision, write, manifest)


register_exporter(ExporterInfo(target="coreml", precisions=PRECISIONS, extra="export,coreml",
                               modules=("torch", "coremltools"), export=export_coreml,
                               # a calibration set is only run on macOS (activation calibration); elsewhere INT8
                               # is weight-only and a --calib would do nothing
                               takes={"time_range": PRECISIONS,
                                      "calib": INT8 if plan_for("int8").calibrate_activations else ()},
                               notes="ML Program (.mlpackage); prediction and INT8 activation calibration "
                                     "need macOS"))
