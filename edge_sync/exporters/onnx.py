"""ONNX artifacts: torch.onnx (dynamo) export with a dynamic time axis, checker + shape inference, FP16, INT8 QDQ.

Facts this relies on (DESIGN.md, measured with torch 2.13): the dynamo exporter emits opset 18; the
correlation is a loop over shifted slices so T stays dynamic; audio time is tied to 4*T. Every export is
checked against PyTorch at several T, different from the export sample, before the artifact is written.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_sync._deps import require
from edge_sync.artifact import write_artifact
from edge_sync.exporters import ExporterInfo, register_exporter
from edge_sync.exporters.applicable import ALL_PRECISIONS, INT8
from edge_sync.models.embeddings import with_embeddings
from edge_sync.exporters.onnx_int8 import DEFAULT_STEMS
from edge_sync.exporters.common import (base_manifest, check_precision, model_digest, quick_parity,
                                        resolve_calibration)
from edge_sync.spec import AUDIO_INPUTS, example_inputs

log = logging.getLogger(__name__)
EXPORT_FRAMES = 25  # the sample T used to trace; parity is checked at other T
PARITY_FRAMES = (7, 25, 100)


def sample_inputs(model: Any, frames: int, batch: int = 1, seed: int = 0):
    """:func:`edge_sync.spec.example_inputs` as torch tensors, for tracing and PyTorch comparisons."""
    import torch

    audio, video = example_inputs(model.contract, frames, batch, seed)
    return torch.from_numpy(audio), torch.from_numpy(video)


_SHARED: list[Path] = []  # the folder set by shared_exports(), if any


@contextlib.contextmanager
def shared_exports(folder: Path) -> Iterator[None]:
    """Within this block :func:`export_onnx_file` reuses a graph already exported to ``folder`` for the same model
    (config, weights, sample T, torch version). Why: torch.onnx's dynamo export is the slowest step of the onnx,
    openvino and tensorrt exports alike (~60% of each); the export runner hands all its child processes one
    folder, so ``--target all`` pays it once."""
    _SHARED.append(Path(folder))
    try:
        yield
    finally:
        _SHARED.pop()


def export_onnx_file(model: Any, path: Path, frames: int = EXPORT_FRAMES) -> None:
    """Trace ``model`` to ``path`` with dynamic batch and time (audio time tied to 4*T); inside
    :func:`shared_exports`, copy the graph exported before for the same model instead."""
    if not _SHARED:
        _export_onnx_file(model, path, frames)
        return
    torch = require("torch", "export", "ONNX export")
    cached = _SHARED[-1] / f"{model_digest(model)[:32]}-t{frames}-torch{torch.__version__}.onnx"
    if not cached.is_file():
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        _export_onnx_file(model, partial, frames)
        partial.replace(cached)  # atomic: a concurrent reader sees the whole graph or none
    else:
        log.info("reusing the ONNX graph exported for this model at %s", cached)
    shutil.copyfile(cached, path)


def _export_onnx_file(model: Any, path: Path, frames: int) -> None:
    torch = require("torch", "export", "ONNX export")
    require("onnxscript", "export", "ONNX export with torch's dynamo exporter")
    model = model.eval()
    audio, video = sample_inputs(model, frames)
    t = torch.export.Dim("T", min=1, max=100_000)
    b = torch.export.Dim("B", min=1, max=1024)
    steps = AUDIO_INPUTS[model.contract.audio_input].steps_per_frame
    dynamic = {"audio": {0: b, audio.ndim - 1: steps * t}, "video": {0: b, 2: t}}
    torch.onnx.export(model, (audio, video), str(path), input_names=["audio", "video"],
                      output_names=[t.name for t in model.contract.outputs], dynamic_shapes=dynamic, dynamo=True,
                      external_data=False, verbose=False)
    strip_metadata(path)


def strip_metadata(path: Path) -> None:
    """Drop the exporter's per-node metadata (Python stack traces, FX names): a quarter of the student's file,
    nothing a runtime reads, and it would ship to every device."""
    onnx = require("onnx", "export", "ONNX export")
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))


def check_onnx(path: Path) -> int:
    """onnx checker + shape inference; returns the opset."""
    onnx = require("onnx", "export", "checking ONNX graphs")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def to_fp16(src: Path, dst: Path) -> None:
    """FP16 weights and activations, float32 inputs/outputs (keep_io_types) so callers see no change."""
    onnx = require("onnx", "export", "FP16 conversion")
    require("onnxruntime", "onnxruntime", "FP16 conversion")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=["Softmax"])
    ir = require("onnx_ir", "export", "FP16 conversion")
    graph = ir.from_proto(model)
    graph.graph.sort()  # the converter appends its input casts after their users; the checker wants order
    onnx.save(ir.to_proto(graph), str(dst))


def onnx_parity(model: Any, path: Path, frames: tuple[int, ...] = PARITY_FRAMES) -> dict[str, Any]:
    """Max abs error of both outputs vs PyTorch at several T (dynamic axes really work) on onnxruntime."""
    ort = require("onnxruntime", "onnxruntime", "checking an ONNX export")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return quick_parity(model, lambda a, v: session.run(None, {"audio": a, "video": v}), frames, "onnxruntime")


def write_onnx_model(model: Any, path: Path, precision: str, calib: Any = None,
                     calib_method: str = "minmax", symmetric_activations: bool = True,
                     int8_stems: str = DEFAULT_STEMS) -> dict[str, Any]:
    """The graph for ``precision`` at ``path``; returns manifest fields (opset, quantization recipe).

    INT8 activations are symmetric INT8: for the real-face student, UINT8 asymmetric activations (onnxruntime's
    faster x86 path: 23 vs 34 ms at T=100 here) kept only 89.5% of FP32's frame answers on synthetic hold-out clips
    and failed parity; symmetric kept 97.3% (frame accuracy 95.5% vs FP32's 96.3%)."""
    out: dict[str, Any] = {}
    fp32 = path.with_name(path.stem + ".fp32.onnx")
    export_onnx_file(model, fp32)
    if precision == "fp16":
        to_fp16(fp32, path)
    elif precision == "int8":
        from edge_sync.exporters.onnx_int8 import quantize_qdq

        out["quantization"] = quantize_qdq(fp32, path, calib, method=calib_method,
                                           symmetric_activations=symmetric_activations, stems=int8_stems)
    else:
        fp32.replace(path)
    fp32.unlink(missing_ok=True)
    out["opset"] = check_onnx(path)
    return out


def export_onnx(model: Any, out_dir: Path, precision: str = "fp32", name: str = "model",
                source: dict[str, Any] | None = None, calib: Any = None, calib_method: str | None = None,
                time_range: Any = None, int8_stems: str | None = None, **_: Any) -> Path:
    """Write ``NAME.onnx-PRECISION/`` with model.onnx and a manifest (with the embedding outputs where the model's
    embeddings are separable: :mod:`edge_sync.models.embeddings`)."""
    check_precision("onnx", precision, EXPORTER.precisions)
    model = with_embeddings(model)
    calib_set = resolve_calibration(model, calib) if precision == "int8" else None

    def write(tmp: Path) -> dict[str, Any]:
        path = tmp / "model.onnx"
        fields = write_onnx_model(model, path, precision, calib_set, calib_method or "minmax",
                                  int8_stems=int8_stems or DEFAULT_STEMS)
        return {"entry": {"model": "model.onnx"}, **fields, "parity_quick": onnx_parity(model, path)}

    manifest = base_manifest(model, source, ("onnx", "onnxscript", "onnxruntime"), ["onnxruntime"],
                             time_range=time_range, calibration=calib_set)
    return write_artifact(out_dir, name, "onnx", precision, write, manifest)


EXPORTER = register_exporter(ExporterInfo(target="onnx", precisions=("fp32", "fp16", "int8"), extra="export",
                                          modules=("torch", "onnx", "onnxscript", "onnxruntime"),
                                          export=export_onnx, shares="onnx-graph",
                                          takes={"calib": INT8, "calib_method": INT8, "int8_stems": INT8,
                                                 "time_range": ALL_PRECISIONS}))
