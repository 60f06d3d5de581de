"""TensorRT artifacts: a TensorRT-ready ONNX, a build script for the device, a static check and a trtexec line.

No machine that makes artifacts has TensorRT (DESIGN.md, "Toolchain facts"), and an engine is specific to one
GPU and one TensorRT version anyway, so the artifact carries what the device needs to build its own:

- ``model.onnx``, typed for the precision: FP32; FP16 as a typed graph (float32 inputs/outputs, Softmax kept
  FP32), because TensorRT 11 removed the FP16 builder flag and builds every network strongly typed; INT8 as
  explicit Q/DQ with symmetric INT8 activations and per-channel weights (TensorRT reads zero points of 0 only;
  implicit calibrators are deprecated in 10 and gone in 11). Precision is decided by the graph, not by flags.
- ``build_engine.py``: a standalone script using TensorRT's Python API (parse, optimisation profile, build).
- the manifest: the static check report, the optimisation profile, an equivalent ``trtexec`` line, and the same
  graph's parity against PyTorch on onnxruntime (the graph TensorRT will parse, run on CPU).

Where ``tensorrt`` imports on the exporting machine, the script is also run to add ``model.plan``; that path
has not run here (no TensorRT on any machine of this project) and falls back to shipping no engine.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._deps import available, require
from edge_sync.artifact import write_artifact
from edge_sync.errors import EdgeSyncError
from edge_sync.exporters import ExporterInfo, register_exporter
from edge_sync.exporters.applicable import INT8
from edge_sync.models.embeddings import with_embeddings
from edge_sync.exporters import onnx as onnx_exporter
from edge_sync.exporters.onnx_int8 import DEFAULT_STEMS
from edge_sync.exporters.common import (TimeRange, base_manifest, bounded_time_range,
                                        check_precision, resolve_calibration)
from edge_sync.exporters.tensorrt_check import (
    TENSORRT_VERSION,
    ShapeRange,
    profile_shapes,
    require_compatible,
    trtexec_shapes,
)

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MIB = 1024
MODEL_FILE = "model.onnx"
ENGINE_FILE = "model.plan"
ENGINE_INFO = "model.plan.json"  # written by build_engine.py beside the engine: what it was built from
BUILD_SCRIPT = "build_engine.py"
BUILD_TIMEOUT_S = 3600
EXIT_NO_TENSORRT = 3  # build_engine.py's exit status when TensorRT does not import
ENGINE_NOTE = "build on the target device: python build_engine.py or the trtexec line"
TRTEXEC_NOTES = [
    ("TensorRT 10.x: run as written; --stronglyTyped makes the graph's own types (FP16 casts, INT8 Q/DQ) decide "
     "precision, so no --fp16/--int8 flags are needed."),
    "TensorRT 11.x: strong typing is always on; --stronglyTyped can be dropped.",
    "TensorRT 8.6: drop --stronglyTyped and add --fp16 (fp16 artifacts) or --int8 (int8 artifacts).",
    ("FP32 engines on Ampere or newer may use TF32 under TensorRT 10's defaults; add --noTF32 to match the ONNX "
     "parity figures."),
]


# --- the time range and the graph ---------------------------------------------------------------------------
def resolve_time_range(model: Any, time_range: TimeRange | None) -> TimeRange:
    """The clip lengths the engine's profile covers; a TensorRT profile needs a finite max."""
    return bounded_time_range(model, time_range, "TensorRT profiles need a max")


def float_biases(model: Any) -> int:
    """Replace DequantizeLinear nodes of constant INT32 tensors (onnxruntime's quantized Conv biases) by float
    initializers with the same values. TensorRT dequantizes only INT8/FP8/INT4 ("only activation types allowed
    as input"), and a float bias is what its INT8 convolutions take anyway. Returns how many were folded."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    keep, folded = [], []
    for node in model.graph.node:
        src = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if src is None or src.data_type != TensorProto.INT32 or node.input[1] not in inits:
            keep.append(node)
            continue
        q = numpy_helper.to_array(src).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        has_zp = len(node.input) > 2 and node.input[2] in inits
        zp = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if has_zp else np.zeros_like(scale)
        if scale.size > 1:
            axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        folded.append(numpy_helper.from_array(((q - zp) * scale).astype(np.float32), node.output[0]))
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        used = {name for n in keep for name in n.input}
        live = [i for i in model.graph.initializer if i.name in used] + folded
        del model.graph.initializer[:]
        model.graph.initializer.extend(live)
    return len(folded)


def write_int8(model: Any, dst: Path, calib: Any, method: str, stems: str = DEFAULT_STEMS) -> dict[str, Any]:
    """FP32 export -> symmetric INT8 Q/DQ (the lead's onnxruntime recipe) -> float biases for TensorRT."""
    onnx = require("onnx", "export", "INT8 export for TensorRT")
    from edge_sync.exporters.onnx_int8 import quantize_qdq

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx_exporter.export_onnx_file(model, fp32)
        recipe = quantize_qdq(fp32, dst, calib, method=method, symmetric_activations=True, stems=stems)
    graph = onnx.load(str(dst))
    folded = float_biases(graph)
    if folded:
        onnx.save(graph, str(dst))
        recipe["biases"] = f"float ({folded} INT32 bias dequantizations folded: TensorRT dequantizes INT8 only)"
    return recipe


def write_model(model: Any, dst: Path, precision: str, calib: Any, method: str,
                stems: str = DEFAULT_STEMS) -> dict[str, Any] | None:
    """``dst`` = the graph TensorRT will parse; returns the INT8 recipe (None for float precisions)."""
    if precision == "int8":
        return write_int8(model, dst, calib, method, stems)
    onnx_exporter.export_onnx_file(model, dst)
    if precision == "fp16":
        typed = dst.with_name("model.fp16.onnx")
        onnx_exporter.to_fp16(dst, typed)
        typed.replace(dst)
    return None


# --- what the device runs ---------------------------------------------------------------------------------
def trtexec_line(profile: dict[str, ShapeRange], onnx_file: str = MODEL_FILE, engine: str = ENGINE_FILE) -> str:
    """The trtexec command equivalent to build_engine.py (TensorRT 10 syntax; see TRTEXEC_NOTES)."""
    return (f"trtexec --onnx={onnx_file} --saveEngine={engine} --minShapes={trtexec_shapes(profile, 'min')} "
            f"--optShapes={trtexec_shapes(profile, 'opt')} --maxShapes={trtexec_shapes(profile, 'max')} "
            "--stronglyTyped")


def script_defaults(contract: Any, time_range: TimeRange, precision: str, opset: int | None) -> dict[str, Any]:
    """What build_engine.py needs to know about this artifact: file names, precision and each input's shape
    template ('4T' = 4 steps per video frame), so its profile can be rebuilt for other frame ranges."""
    return {"onnx": MODEL_FILE, "engine": ENGINE_FILE, "engine_info": ENGINE_INFO, "precision": precision,
            "workspace_mib": DEFAULT_WORKSPACE_MIB, "opset": opset, "checked_against": TENSORRT_VERSION,
            "frames": {"min": time_range.min_frames, "opt": time_range.opt_frames, "max": time_range.max_frames},
            "inputs": {spec.name: ["1" if t == "B" else t for t in spec.shape] for spec in contract.inputs}}


def build_script_text(defaults: dict[str, Any]) -> str:
    return BUILD_SCRIPT_TEMPLATE.replace("__DEFAULTS__", json.dumps(defaults, sort_keys=True))


def run_build_script(folder: Path, timeout_s: int = BUILD_TIMEOUT_S) -> dict[str, Any]:
    """Run build_engine.py in ``folder`` (exporting machine with TensorRT and a GPU). Untested here: no machine
    of this project has TensorRT. A failure is logged and recorded; the artifact still ships without an engine."""
    cmd = [sys.executable, str(folder / BUILD_SCRIPT), "--onnx", str(folder / MODEL_FILE),
           "--out", str(folder / ENGINE_FILE)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"built": False, "reason": f"build_engine.py ran past {timeout_s} s"}
    if done.returncode != 0 or not (folder / ENGINE_FILE).is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        log.warning("TensorRT engine build failed (exit %d): %s", done.returncode, " | ".join(tail))
        (folder / ENGINE_FILE).unlink(missing_ok=True)
        (folder / ENGINE_INFO).unlink(missing_ok=True)
        return {"built": False, "reason": f"build_engine.py exit {done.returncode}: {' | '.join(tail)}"}
    info = json.loads((folder / ENGINE_INFO).read_text())
    return {"built": True, "tensorrt": info.get("tensorrt"), "typing": info.get("typing")}


def check_engine_request(want: bool | None) -> None:
    """Refuse build_engine=True up front (before minutes of export) where TensorRT is missing."""
    if want and not available("tensorrt"):
        raise EdgeSyncError("build_engine=True needs TensorRT on this machine; build on the device instead: "
                            "python build_engine.py inside the artifact")


def engine_build(folder: Path, want: bool | None) -> dict[str, Any]:
    """Build model.plan here when asked, or when ``want`` is None and TensorRT imports."""
    if want is False:
        return {"built": False, "reason": "not requested (build_engine=False)"}
    if not available("tensorrt"):
        return {"built": False, "reason": "tensorrt is not importable on the exporting machine"}
    return run_build_script(folder)


def parity_frames(time_range: TimeRange) -> tuple[int, ...]:
    """PyTorch-vs-ONNX check lengths inside the profile (several, none equal to the export sample only)."""
    hi = time_range.max_frames or time_range.opt_frames
    inside = {t for t in onnx_exporter.PARITY_FRAMES if time_range.min_frames <= t <= hi}
    return tuple(sorted(inside | {time_range.opt_frames}))


def export_tensorrt(model: Any, out_dir: Path, precision: str = "fp32", name: str = "model",
                    source: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write ``NAME.tensorrt-PRECISION/``: model.onnx (checked), build_engine.py, manifest (and model.plan
    where TensorRT is present). Options: time_range (TimeRange), calib (path or CalibrationSet, int8),
    calib_method (minmax/entropy/percentile), int8_stems (float/int8), build_engine (None=auto, True, False).
    A separable model's embeddings are outputs too (:mod:`edge_sync.models.embeddings`)."""
    check_precision("tensorrt", precision, PRECISIONS)
    model = with_embeddings(model.eval())
    check_engine_request(options.get("build_engine"))
    time_range = resolve_time_range(model, options.get("time_range"))
    calib = resolve_calibration(model, options.get("calib")) if precision == "int8" else None
    # TensorRT needs zero points of 0, so INT8 after a ReLU uses half the code range; clipping the rare tail
    # (percentile) kept the clip offset agreement at 99% where MinMax gave 98% on the bundled student
    method = options.get("calib_method") or "percentile"
    contract = model.contract
    profile = profile_shapes(contract, time_range.min_frames, time_range.opt_frames, time_range.max_frames)

    def write(tmp: Path) -> dict[str, Any]:
        onnx_path = tmp / MODEL_FILE
        recipe = write_model(model, onnx_path, precision, calib, method, options.get("int8_stems") or DEFAULT_STEMS)
        report = require_compatible(onnx_path, contract, profile)  # refuses the artifact on any error
        script = tmp / BUILD_SCRIPT
        script.write_text(build_script_text(script_defaults(contract, time_range, precision, report.opset)))
        script.chmod(0o755)
        parity = onnx_exporter.onnx_parity(model, onnx_path, parity_frames(time_range))
        built = engine_build(tmp, options.get("build_engine"))
        entry = {"model": MODEL_FILE, "build_script": BUILD_SCRIPT}
        if built["built"]:
            entry.update(engine=ENGINE_FILE, engine_info=ENGINE_INFO)
        extra = {"entry": entry, "opset": report.opset, "trtexec": trtexec_line(profile), "engine": ENGINE_NOTE,
                 "tensorrt": {"profile": {k: v.to_dict() for k, v in profile.items()}, "typing": "strong",
                              "checked_against": TENSORRT_VERSION, "build": f"python {BUILD_SCRIPT}",
                              "trtexec_notes": TRTEXEC_NOTES, "engine_build": built},
                 "tensorrt_check": report.to_dict(), "parity_quick": parity}
        if recipe is not None:
            extra["quantization"] = recipe
        return extra

    manifest = base_manifest(model, source, tools=("onnx", "onnxruntime"),
                             runs_on=["tensorrt (build on device)", "onnxruntime"], time_range=time_range,
                             calibration=calib)
    return write_artifact(out_dir, name, "tensorrt", precision, write, manifest)


register_exporter(ExporterInfo(target="tensorrt", precisions=PRECISIONS, extra="export",
                               modules=("torch", "onnx", "onnxscript", "onnxruntime"), export=export_tensorrt,
                               shares="onnx-graph",
                               takes={"calib": INT8, "calib_method": INT8, "int8_stems": INT8,
                                      "time_range": PRECISIONS},
                               notes="TensorRT-ready ONNX + build_engine.py; the engine is built on the device"))


# --- build_engine.py (written into every artifact; stdlib + tensorrt only, Python 3.8+ for JetPack 5) -------
BUILD_SCRIPT_TEMPLATE = r'''#!/usr/bin/env python3
"""Build a TensorRT engine from this edge-sync artifact, on the device that will run it.

An engine only runs on the GPU model and TensorRT version that built it, so the artifact ships the
TensorRT-ready ONNX and this script instead of an engine. Precision is in the graph itself (FP16 casts or
INT8 Q/DQ), so the network is built strongly typed and needs no precision flags.

    python build_engine.py                                # model.onnx -> model.plan, the artifact's profile
    python build_engine.py --max-frames 400 --workspace 2048
    python build_engine.py --dry-run                      # print the build plan; needs no TensorRT

Needs only TensorRT's Python package (JetPack on Jetson, NVIDIA's wheels on x86). Exit status: 0 built,
1 build failed, 2 bad arguments or missing ONNX file, 3 TensorRT not importable.
"""
import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

DEFAULTS = json.loads(r"""__DEFAULTS__""")
EXIT_BUILD_FAILED, EXIT_USAGE, EXIT_NO_TENSORRT = 1, 2, 3


class BuildError(Exception):
    """The parser or builder refused the model; the message says what to do."""


def parse_args(argv=None):
    here = Path(__file__).resolve().parent
    frames = DEFAULTS["frames"]
    p = argparse.ArgumentParser(description="Build model.plan from this artifact's model.onnx with TensorRT.")
    p.add_argument("--onnx", type=Path, default=here / DEFAULTS["onnx"], help="ONNX model (default: %(default)s)")
    p.add_argument("--out", type=Path, default=here / DEFAULTS["engine"], help="engine file (default: %(default)s)")
    p.add_argument("--workspace", type=int, default=DEFAULTS["workspace_mib"],
                   help="builder workspace limit in MiB (default: %(default)s)")
    p.add_argument("--min-frames", type=int, default=frames["min"], help="shortest clip (default: %(default)s)")
    p.add_argument("--opt-frames", type=int, default=frames["opt"], help="tuned clip length (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=frames["max"], help="longest clip (default: %(default)s)")
    p.add_argument("--typing", choices=("auto", "strong", "weak"), default="auto",
                   help="strong: the graph's types decide precision (TensorRT >= 10); weak: TensorRT 8.6 "
                        "precision flags; auto: strong where available (default)")
    p.add_argument("--dry-run", action="store_true", help="print the build plan as JSON and exit")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    args = p.parse_args(argv)
    if not 1 <= args.min_frames <= args.opt_frames <= args.max_frames:
        p.error(f"need 1 <= --min-frames <= --opt-frames <= --max-frames, got {args.min_frames}, "
                f"{args.opt_frames}, {args.max_frames}")
    if args.workspace <= 0:
        p.error("--workspace must be a positive number of MiB")
    return args


def shape(template, frames):
    """A contract shape template ('1', '13', 'T', '4T') at a number of video frames."""
    dims = []
    for token in template:
        if token.endswith("T"):
            dims.append(frames * int(token[:-1] or 1))
        else:
            dims.append(int(token))
    return dims


def build_plan(args):
    corners = {"min": args.min_frames, "opt": args.opt_frames, "max": args.max_frames}
    profile = {name: {k: shape(t, f) for k, f in corners.items()} for name, t in DEFAULTS["inputs"].items()}
    return {"onnx": str(args.onnx), "out": str(args.out), "precision": DEFAULTS["precision"],
            "typing": args.typing, "workspace_mib": args.workspace, "profile": profile}


def major_version(trt):
    return int(trt.__version__.split(".")[0])


def strong_typing(trt, requested):
    """Whether to build strongly typed: TensorRT 11 always is; 10 has the flag; 8.6 has only precision flags."""
    has_flag = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if requested == "weak":
        if major_version(trt) >= 11:
            raise BuildError(f"TensorRT {trt.__version__} builds strongly typed networks only; drop --typing weak")
        return False
    if requested == "strong" and not has_flag and major_version(trt) < 11:
        raise BuildError(f"TensorRT {trt.__version__} has no strongly typed networks; use --typing weak")
    return has_flag or major_version(trt) >= 11


def network_flags(trt, strong):
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if major_version(trt) < 10:  # explicit batch is implied from 10 on
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return flags


def set_weak_precision(trt, config, precision):
    """TensorRT 8.6-style flags: FP16 lets the builder choose FP16 kernels; INT8 enables the Q/DQ layers."""
    wanted = {"fp16": ("FP16",), "int8": ("INT8",)}.get(precision, ())
    for flag in wanted:
        if not hasattr(trt.BuilderFlag, flag):
            raise BuildError(f"TensorRT {trt.__version__} has no {flag} builder flag; build strongly typed")
        config.set_flag(getattr(trt.BuilderFlag, flag))


def parse_onnx(trt, network, logger, onnx_path):
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT {trt.__version__} could not parse {onnx_path}:\n  {errors}\nThe graph is opset "
                         f"{DEFAULTS['opset']} and passed a static check against TensorRT "
                         f"{DEFAULTS['checked_against']} (manifest: tensorrt_check); older releases may not parse it")
    return parser


def add_profile(builder, network, config, plan):
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    profile = builder.create_optimization_profile()
    for name, corners in plan["profile"].items():
        if name not in names:
            raise BuildError(f"the network has no input {name!r} (inputs: {', '.join(names)})")
        profile.set_shape(name, corners["min"], corners["opt"], corners["max"])
    config.add_optimization_profile(profile)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(trt, args, plan):
    logger = trt.Logger(trt.Logger.VERBOSE if args.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = strong_typing(trt, args.typing)
    network = builder.create_network(network_flags(trt, strong))
    parser = parse_onnx(trt, network, logger, args.onnx)  # keep the parser alive while building
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace << 20)
    if not strong:
        set_weak_precision(trt, config, plan["precision"])
    add_profile(builder, network, config, plan)
    serialized = builder.build_serialized_network(network, config)
    del parser
    if serialized is None:
        raise BuildError(f"TensorRT {trt.__version__} built no engine (see the log above); try a larger "
                         "--workspace or a smaller --max-frames, or rerun with --verbose")
    args.out.write_bytes(bytes(serialized))
    info = {"tensorrt": trt.__version__, "precision": plan["precision"], "typing": "strong" if strong else "weak",
            "profile": plan["profile"], "workspace_mib": args.workspace, "onnx_sha256": sha256(args.onnx),
            "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    args.out.with_name(args.out.name + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None):
    args = parse_args(argv)
    plan = build_plan(args)
    if args.dry_run:
        print(json.dumps(plan, indent=2))
        return 0
    if not args.onnx.is_file():
        print(f"build_engine.py: no ONNX model at {args.onnx}; run this script inside the artifact folder or pass "
              "--onnx", file=sys.stderr)
        return EXIT_USAGE
    try:
        import tensorrt as trt
    except ImportError as exc:
        print(f"build_engine.py: TensorRT's Python package is not importable here ({exc}).\n"
              "Build the engine on the target device, where TensorRT is installed (JetPack on Jetson; NVIDIA's "
              "tensorrt wheels on x86), or use the trtexec line in manifest.json.", file=sys.stderr)
        return EXIT_NO_TENSORRT
    try:
        info = build(trt, args, plan)
    except BuildError as exc:
        print(f"build_engine.py: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    print(f"wrote {args.out} (TensorRT {info['tensorrt']}, {plan['precision']}, {info['typing']} typing, frames "
          f"{args.min_frames}..{args.max_frames})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
