"""OpenVINO artifacts: IR (.xml/.bin) converted from the dynamic-T ONNX export; FP16 weights; NNCF INT8.

Facts this relies on (DESIGN.md "Toolchain facts", rechecked with openvino 2026.4 / nncf 3.4): ``convert_model``
keeps T dynamic from the ONNX (audio time tied to 4*T); the CPU plugin runs bf16 unless told f32, so parity is
checked with the settings of :mod:`edge_sync.runtimes.openvino_backend`, which the runtime then uses too.

INT8 recipe (why; measured on the bundled student with 64 calibration clips and 100 hold-out clips):
NNCF's defaults (PERFORMANCE preset, fast bias correction) quantise the convolutions well, but they also put
8-bit quantisers inside the cross-modal part: on the 31 element-wise products of the correlation, on the scaled
similarities (one scale for +-4.4) and on the head's logits (one scale for +-13.1) right before the softmax, so
each logit carries rounding steps of 0.035 and 0.1. Those ops cost nothing next to the encoders, so every op that
sees both audio and video, except the head's convolutions, stays float: the correlation output, the similarity
path and the softmax are then exact functions of the INT8 embeddings (the encoders' INT8 error dominates on the
bundled student; this removes the systematic part at no cost in size or speed). The head's convolutions stay INT8:
float there would add 7 % of the FP32 size. The audio input's first convolution stays float: one input channel and
9 taps gain nothing from INT8, while one 8-bit scale over MFCCs of +-96 rounds them in steps of 0.75 (float there
cut the worst probability error vs FP32 on the hold-out clips from 0.39 to 0.24).
"""
from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._deps import require
from edge_sync.artifact import write_artifact
from edge_sync.errors import EdgeSyncError
from edge_sync.exporters import ExporterInfo, register_exporter
from edge_sync.exporters.applicable import INT8
from edge_sync.exporters.common import base_manifest, check_precision, quick_parity, resolve_calibration
from edge_sync.models.embeddings import with_embeddings
from edge_sync.exporters.onnx import PARITY_FRAMES, export_onnx_file

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "int8")
WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")  # layers whose INT8 form pays for itself
CALIB_CHECK_CLIPS = 8  # calibration clips the INT8 quick check compares at clip level


class OpenVINOExportError(EdgeSyncError, RuntimeError):
    """OpenVINO conversion or NNCF quantisation produced something the runtime could not use."""


def convert_onnx(path: Path) -> Any:
    """ONNX -> ov.Model; refuse a model whose time axis came out static (it would fail at any other T)."""
    ov = require("openvino", "openvino", "OpenVINO export")
    model = ov.convert_model(str(path))
    video = next((i for i in model.inputs if "video" in i.get_names()), None)
    if video is None or "audio" not in {n for i in model.inputs for n in i.get_names()}:
        raise OpenVINOExportError(f"converted model has inputs {[i.get_names() for i in model.inputs]}, expected "
                                  "audio and video; re-export from a SyncModel")
    if video.get_partial_shape()[2].is_static:
        raise OpenVINOExportError("OpenVINO conversion fixed the time axis; the artifact would only take one clip "
                                  "length. Check the ONNX export's dynamic shapes (DESIGN.md: tie audio to 4*T)")
    return model


def _inputs_by_op(model: Any) -> dict[str, set[str]]:
    """For each op, the model inputs (Parameters) it depends on."""
    deps: dict[str, set[str]] = {}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() == "Parameter":
            deps[name] = {name}
        else:
            deps[name] = set().union(*(deps[i.get_source_output().get_node().get_friendly_name()]
                                       for i in op.inputs()))
    return deps


def _first_weighted_layer(model: Any, input_name: str) -> str | None:
    """The first Convolution/MatMul reached from the model input ``input_name`` (breadth first)."""
    frontier = [p for p in model.get_parameters() if input_name in p.output(0).get_names()]
    seen: set[str] = set()
    while frontier:
        node = frontier.pop(0)
        for out in node.outputs():
            for target in out.get_target_inputs():
                user = target.get_node()
                if user.get_type_name() in WEIGHTED:
                    return user.get_friendly_name()
                if user.get_friendly_name() not in seen:
                    seen.add(user.get_friendly_name())
                    frontier.append(user)
    return None


def float_scope(model: Any) -> list[str]:
    """Ops NNCF must leave in float (see the module doc): those that see both audio and video (the correlation,
    the head, the softmax) except the head's weighted layers, plus the audio input's first layer. Found from the
    graph, not from exporter-generated names, so the recipe holds for any SyncModel and any export naming."""
    deps = _inputs_by_op(model)
    names = [op.get_friendly_name() for op in model.get_ordered_ops()
             if len(deps[op.get_friendly_name()]) > 1 and op.get_type_name() not in WEIGHTED
             and op.get_type_name() not in ("Constant", "Result")]
    audio_in = _first_weighted_layer(model, "audio")
    return names + ([audio_in] if audio_in else [])


class _CalibrationData:
    """Re-iterable view of a calibration set for nncf.Dataset: NNCF walks the data once per algorithm, and
    materialising every normalised clip would take ~7.5 MB per 50-frame clip."""

    def __init__(self, calib: Any) -> None:
        self.calib = calib

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for audio, video in self.calib.pairs():
            yield {"audio": audio, "video": video}

    def __len__(self) -> int:
        return len(self.calib)


def quantize_int8(model: Any, calib: Any) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training quantisation with the recipe in the module doc; returns the model and its record."""
    nncf = require("nncf", "export", "OpenVINO INT8 export")
    keep_float = float_scope(model)
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    settings = {"preset": "performance", "target_device": "any", "fast_bias_correction": True,
                "subset_size": len(calib)}
    log.info("NNCF INT8 on %d calibration clips; %d ops stay float (cross-modal part, audio input layer)",
             len(calib), len(keep_float))
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # NNCF logs a line per skipped op at INFO: hundreds for the correlation
    try:
        quantized = nncf.quantize(
            model, nncf.Dataset(_CalibrationData(calib)), preset=nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.ANY, subset_size=len(calib), fast_bias_correction=True,
            ignored_scope=nncf.IgnoredScope(names=keep_float, validate=False))
    except (RuntimeError, ValueError) as exc:
        raise OpenVINOExportError(f"NNCF could not quantise the model ({exc}); check the calibration set "
                                  "(edge-sync calibrate) or export fp16 instead") from exc
    finally:
        nncf_log.setLevel(level)
    fq = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())
    if fq == 0:
        raise OpenVINOExportError("NNCF inserted no quantisers: the INT8 artifact would be a float model")
    record = {"tool": "nncf", **settings, "quantizers": fq,
              "float_ops": dict(sorted(Counter(types[n] for n in keep_float).items()))}
    return quantized, record


def _compile(xml: Path, precision: str, embeddings: bool) -> Any:
    """Compile exactly as the runtime backend does (same precision hint), so parity measures what users get."""
    from edge_sync.runtimes.openvino_backend import OpenVINOSession

    return OpenVINOSession(str(xml), precision, threads=None, embeddings=embeddings)


def openvino_parity(model: Any, xml: Path, precision: str, frames: tuple[int, ...] = PARITY_FRAMES,
                    calib: Any = None) -> dict[str, Any]:
    """Max abs error of every output vs PyTorch at several T on the OpenVINO CPU runtime (dynamic T really
    works); for INT8 also clip-level offset agreement on a few calibration clips (random inputs give flat
    probabilities, where INT8 rounding flips argmaxes that real clips would not)."""
    session = _compile(xml, precision, model.contract.embeddings)
    result: dict[str, Any] = {**quick_parity(model, session.run, frames, "openvino"), "device": "CPU",
                              "inference_precision": session.inference_precision}
    if calib is not None:
        result["calibration_clips"] = _clip_agreement(model, session, calib)
    return result


def _clip_agreement(model: Any, session: Any, calib: Any) -> dict[str, Any]:
    """Share of the first calibration clips whose clip offset (argmax of frame-averaged probs) matches PyTorch."""
    import torch

    same = []
    for audio, video in calib.pairs(limit=CALIB_CHECK_CLIPS):
        with torch.inference_mode():
            ref = model(torch.from_numpy(audio), torch.from_numpy(video))[0].numpy()
        out = session.run(audio, video)[0]
        same.append(int(out.mean(-1).argmax(-1)[0] == ref.mean(-1).argmax(-1)[0]))
    return {"clips": len(same), "clip_offset_agreement": float(np.mean(same))}


def export_openvino(model: Any, out_dir: Path, precision: str = "fp32", name: str = "model",
                    source: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write ``NAME.openvino-PRECISION/`` with model.xml/.bin and a manifest (with the embedding outputs where
    the model's embeddings are separable: :mod:`edge_sync.models.embeddings`).

    Options: ``calib`` (int8: a calibration set folder or CalibrationSet; default the shared synthetic set),
    ``time_range`` (a TimeRange recorded in the manifest; the runtime windows clips to its max). ``calib_method``
    is onnxruntime's: :func:`edge_sync.exporters.api.export` refuses it for this target.
    """
    check_precision("openvino", precision, PRECISIONS)
    ov = require("openvino", "openvino", "OpenVINO export")
    model = with_embeddings(model.eval())
    calib = resolve_calibration(model, options.get("calib")) if precision == "int8" else None
    manifest = base_manifest(model, source, tools=("onnx", "openvino", "nncf"), runs_on=["openvino"],
                             time_range=options.get("time_range"), calibration=calib)

    def write(tmp: Path) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="edge-sync-ov-") as scratch:
            onnx_path = Path(scratch) / "model.onnx"
            export_onnx_file(model, onnx_path)
            ov_model = convert_onnx(onnx_path)
        extra: dict[str, Any] = {}
        if precision == "int8":
            ov_model, extra["quantization"] = quantize_int8(ov_model, calib)
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=(precision == "fp16"))
        parity = openvino_parity(model, tmp / "model.xml", precision, calib=calib)
        return {"entry": {"model": "model.xml"}, **extra, "parity_quick": parity}

    return write_artifact(out_dir, name, "openvino", precision, write, manifest)


register_exporter(ExporterInfo(target="openvino", precisions=PRECISIONS, extra="export,openvino",
                               modules=("torch", "onnx", "onnxscript", "openvino", "nncf"), export=export_openvino,
                               shares="onnx-graph",
                               takes={"calib": INT8, "time_range": PRECISIONS},  # NNCF calibrates its own way
                               notes="IR from the dynamic-T ONNX; INT8 by NNCF with the cross-modal ops and the "
                                     "audio input layer in float"))
