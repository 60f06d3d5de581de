"""INT8 ONNX in QDQ form with onnxruntime's static quantization, fed by an edge-sync calibration set.

Recipe (measured on the bundled student; README "INT8"):
- ``quant_pre_process`` with ``skip_symbolic_shape=True`` (symbolic shape inference fails on the dynamic T graph);
- weights INT8 per channel and symmetric; activations INT8 with zero points of 0 (``symmetric_activations``, the
  onnx and tensorrt targets' choice: UINT8 asymmetric activations, onnxruntime's faster x86 path, lost 10% of the
  real-face student's frame answers) or UINT8;
- the encoders are quantized end to end (convs and the ops between them, see QUANTIZED_OPS); the cosine
  correlation and Softmax stay float, because similarities and probabilities span ranges one INT8 scale would
  crush; the sync head's convs are INT8 by default (no loss measured on the hold-out set);
- the first conv of each input (``input_convs``) stays float by default: a one-node-at-a-time sensitivity scan put
  most of the INT8 error there (they see raw pixels and MFCCs, whose ranges one scale serves worst);
- calibration MinMax (default), Entropy or Percentile, on the same set every INT8 target uses.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_sync._deps import require
from edge_sync.errors import EdgeSyncError

log = logging.getLogger(__name__)
METHODS = ("minmax", "entropy", "percentile")
# --int8-stems: the encoders' first convs float (default) or INT8 too (a graph of INT8 ops only, for NPUs)
STEMS = ("float", "int8")
DEFAULT_STEMS = "float"  # every INT8 figure in the docs since session 13 is with float stems
# Conv is what INT8 speeds up (Relu/Clip fold into it); Add/Mul/Transpose/Reshape/ReduceMean are quantized so
# activations stay INT8 between convs (residual adds, the frames-to-batch transpose): measured on the student,
# quantizing Conv alone left a float round trip (DequantizeLinear -> op -> QuantizeLinear) around every one of
# them, which cost more than the INT8 convs saved.
QUANTIZED_OPS = ("Conv", "Relu", "Clip", "Add", "Mul", "Transpose", "Reshape", "ReduceMean")
FLOAT_FROM = "ReduceL2"  # the embeddings' L2 normalisation: the cosine correlation and all after it stay float


def _consumers(model: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def downstream_nodes(model: Any, start_op: str = FLOAT_FROM) -> set[str]:
    """Names of every node fed, directly or not, by a node of type ``start_op`` (and those nodes themselves)."""
    consumers = _consumers(model)
    seen = {n.name for n in model.graph.node if n.op_type == start_op}
    frontier = [o for n in model.graph.node if n.op_type == start_op for o in n.output]
    while frontier:
        for n in consumers.get(frontier.pop(), []):
            if n.name not in seen:
                seen.add(n.name)
                frontier.extend(n.output)
    return seen


def input_convs(model: Any) -> set[str]:
    """Names of the first Conv on every data path from each graph input (the encoders' stems). Shape and Size
    are not followed: the dynamic-T graph feeds the input's shape to reshapes all through the network."""
    consumers = _consumers(model)
    found: set[str] = set()
    for graph_input in model.graph.input:
        seen: set[str] = set()
        frontier = [graph_input.name]
        while frontier:
            for n in consumers.get(frontier.pop(), []):
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.op_type == "Conv":
                    found.add(n.name)
                elif n.op_type not in ("Shape", "Size"):
                    frontier.extend(n.output)
    return found


def float_nodes(model: Any, quantize_head: bool, float_input_convs: bool = True) -> list[str]:
    """Nodes kept float: the correlation (similarities in [-1, 1] next to probabilities) and Softmax always; the
    sync head's convs unless ``quantize_head`` (they see the float correlation and are dequantized before Softmax);
    the encoders' first convs when ``float_input_convs``.
    Keeping the encoders' final projections float as well was tried: the correlation's error did not change."""
    after = downstream_nodes(model)
    if quantize_head:
        producers = {o: n for n in model.graph.node for o in n.output}
        corr = producers.get("correlation")
        head = downstream_nodes(model, corr.op_type) if corr is not None else set()
        after -= {n.name for n in model.graph.node if n.name in head and n.op_type == "Conv"}
    if float_input_convs:
        stems = input_convs(model)
        if len(stems) != len(model.graph.input):
            log.warning("INT8: found %d first convs for %d graph inputs (%s); those are kept float", len(stems),
                        len(model.graph.input), ", ".join(sorted(stems)) or "none")
        after |= stems
    return sorted(after)


CALIB_CHUNK = 4  # clips whose every intermediate tensor onnxruntime holds at once (see CalibrationReader)


def chunk_size(count: int, most: int = CALIB_CHUNK) -> int:
    """The largest chunk <= ``most`` that divides ``count`` (onnxruntime's strided calibration needs one)."""
    return next(k for k in range(min(most, count), 0, -1) if count % k == 0)


class CalibrationReader:
    """onnxruntime's CalibrationDataReader over a calibration set's (audio, video) pairs, read in chunks.

    Why chunks: onnxruntime's calibrators keep every intermediate tensor of every clip they are given before
    reducing them; the histogram ones (percentile, entropy) held 5.5 GB for 64 clips of 50 frames. With
    ``CalibStridedMinMax`` set to :func:`chunk_size` onnxruntime asks for one chunk at a time (``set_range``) and
    folds each into its running result: the same min/max for MinMax, the same histograms (bins grown as needed)
    for the others. The chunks come in order, so one pass over the set serves them all.
    """

    def __init__(self, calib: Any, frames: int | None = None) -> None:
        self._count = len(calib)
        self._pairs: Iterator[tuple[np.ndarray, np.ndarray]] = calib.pairs(frames=frames)
        self._next = 0  # index of the next pair self._pairs yields
        self._end = self._count

    def __len__(self) -> int:
        return self._count

    def set_range(self, start_index: int, end_index: int) -> None:
        if start_index != self._next:
            raise EdgeSyncError(f"calibration chunks must come in order: asked {start_index}, at {self._next}")
        self._end = min(end_index, self._count)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        pair = next(self._pairs, None)
        if pair is None:
            return None
        self._next += 1
        return {"audio": pair[0], "video": pair[1]}

    def rewind(self) -> None:  # part of the reader protocol; one pass is all quantize_static needs
        raise EdgeSyncError("calibration reader cannot rewind")


def quantize_qdq(fp32_path: Path, out_path: Path, calib: Any, *, method: str = "minmax",
                 symmetric_activations: bool = False, per_channel: bool = True,
                 quantize_head: bool = True, stems: str = DEFAULT_STEMS, frames: int | None = None,
                 op_types: tuple[str, ...] = QUANTIZED_OPS, calib_chunk: int = CALIB_CHUNK) -> dict[str, Any]:
    """Write an INT8 QDQ model of ``fp32_path`` to ``out_path``; return the recipe for the manifest.
    ``stems``: "float" keeps the encoders' first convs float (:func:`input_convs`), "int8" quantizes them too.
    ``calib_chunk``: clips calibrated at a time (memory; see :class:`CalibrationReader`)."""
    onnx = require("onnx", "export", "INT8 quantization")
    require("onnxruntime", "onnxruntime", "INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise EdgeSyncError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if stems not in STEMS:
        raise EdgeSyncError(f"unknown --int8-stems {stems!r}; choose one of {', '.join(STEMS)}")
    float_input_convs = stems == "float"
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        graph = onnx.load(str(prepped))
        excluded = float_nodes(graph, quantize_head, float_input_convs)
        quantized = [n.name for n in graph.graph.node if n.op_type in op_types and n.name not in excluded]
        reader = CalibrationReader(calib, frames)
        quantize_static(
            str(prepped), str(out_path), reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types), nodes_to_exclude=excluded, per_channel=per_channel,
            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True,
                           "CalibMovingAverage": False, "CalibTensorRangeSymmetric": symmetric_activations,
                           "CalibStridedMinMax": chunk_size(len(reader), calib_chunk),  # any method: chunks, in order
                           # TensorRT refuses INT32 bias DequantizeLinear: keep biases float for it
                           "QuantizeBias": not symmetric_activations})
    log.info("INT8 QDQ: %d Conv nodes quantized, %d kept float (%s calibration on %s)", len(quantized),
             len(excluded), method, calib.id)
    return {"format": "QDQ", "method": method, "per_channel": per_channel, "weights": "int8 symmetric",
            "activations": "int8 symmetric" if symmetric_activations else "uint8 asymmetric",
            "quantized_ops": list(op_types), "quantized_nodes": len(quantized), "float_nodes": len(excluded),
            "stems": stems,
            "float_part": ", ".join(["correlation and softmax"] + ([] if quantize_head else ["the sync head"])
                                    + (["the first conv of each input"] if float_input_convs else [])),
            "calibration_id": calib.id}
