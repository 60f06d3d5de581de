"""LiteRT (.tflite) artifacts: one static-shape model per time bucket, FP32 / FP16 weights / INT8.

Facts this relies on (DESIGN.md; measured with torch 2.13, litert-torch 0.10, ai-edge-quantizer 0.10,
ai-edge-litert 2.3 on the bundled student):

* litert-torch converts fixed shapes only, so there is one file per clip length T (a "bucket", batch 1):
  ``model_t50.tflite``, ``model_t250.tflite``. The runtime runs exactly these lengths and the Engine windows
  and pads clips to them. FP32 equals PyTorch to ~3e-6 at every bucket.
* BatchNorm is folded into the preceding conv before conversion. litert-torch folds it after Conv2d but not
  after Conv1d (the conv sits between reshapes/transposes there), leaving a MUL and an ADD per temporal conv:
  in INT8 each of those requantizes and the temporal blocks were the noisiest layers (SNR ~24 dB). Folding
  is exact to ~2e-6 in float and removes 70 ops.
* Quantization runs ai-edge-quantizer on the converted float .tflite, not litert-torch's PT2E path: PT2E
  needs torchao (not part of the ``tflite`` extra) and calibrates the torch graph, while ai-edge-quantizer
  calibrates the very LiteRT graph that ships (BatchNorm folded, the runtime's own kernels) and lets a
  recipe pick ops by type and by module scope.
* The INT8 recipe (:class:`Int8Recipe`) is not the library default. ``static_wi8_ai8`` on everything fails
  at run time (an int8 DIV in the L2 normalisation meets a zero divisor), turns the I/O to int8 and would
  squeeze probabilities and similarities into one 8-bit scale each. So the encoders and projections are
  int8 (weights per channel, activations per tensor) and everything after them stays float: the L2
  normalisation, the correlation, the softmax and the graph inputs/outputs; the sync head's convs get int8
  weights with float activations. HARD_SWISH is left float on purpose: for students built with hardswish,
  LiteRT's int8 HARD_SWISH ran 3-4x slower than float and made the INT8 model slower than FP32.
* Calibration statistics are tensor ranges, which do not depend on T, and tensor names are the same in
  every bucket's graph, so the set is run once through the smallest bucket and the same statistics quantize
  every bucket: all buckets share one quantization, and calibrating costs one pass.
* Tensor names (module paths) are an eighth of an FP32 file and a third of an INT8 one and only help
  debugging, so every file is written compact: names dropped except the signature's inputs/outputs, and
  identical zero-point vectors (int64, one per channel) stored once.
* Size floor: INT8 lands at ~34% of FP32, not 25%. For this 175k-parameter model the int8 weights, int32
  biases and float32 per-channel scales alone are 28% of the FP32 file, before any op or tensor table.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._deps import require
from edge_sync.artifact import write_artifact
from edge_sync.errors import EdgeSyncError
from edge_sync.exporters import ExporterInfo, register_exporter
from edge_sync.exporters.applicable import INT8
from edge_sync.models.embeddings import with_embeddings
from edge_sync.exporters.common import (TimeRange, base_manifest, check_precision, model_digest,
                                        resolve_calibration)
from edge_sync.runtimes.tflite_backend import INPUTS, LiteRTSession

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_BUCKETS = (50, 250)
CALIB_CHUNK = 8  # clips per ai-edge-quantizer calibrate() call: bounds memory, statistics carry over
PARITY_CLIPS = 2


@dataclass(frozen=True)
class Int8Recipe:
    """Which ops of the float .tflite become int8. Regexes match an op's scope (its output tensor names,
    which litert-torch derives from the torch module path, e.g. ``...X3DVideoTrunk_video_encoder/...``)."""

    int8_scopes: str = r"_(video|audio)_(encoder|proj)\b"
    int8_ops: tuple[str, ...] = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "MUL", "ADD", "SUB",
                                 "PAD", "TRANSPOSE", "RESHAPE", "CONCATENATION", "SLICE", "AVERAGE_POOL_2D",
                                 "MAX_POOL_2D", "RELU")
    # scopes forced back to float after the rules above (e.g. a layer a per-layer check shows to be sensitive)
    float_scopes: str | None = None
    # the sync head: int8 weights (a third of FP32's float bytes left), float activations into the softmax
    weight_only_scopes: str | None = r"_head\b"
    weight_bits: int = 8

    def to_dict(self) -> dict[str, Any]:
        return {"tool": "ai-edge-quantizer", "activations": "int8 per tensor (asymmetric)",
                "weights": f"int{self.weight_bits} per channel (symmetric)", "float_io": True,
                "float_ops": "everything not matched, incl. HARD_SWISH, L2 norm, correlation, softmax",
                **asdict(self)}


# ---------------------------------------------------------------- conversion
@contextlib.contextmanager
def _litert_progress(show: bool) -> Iterator[None]:
    """litert-torch prints a progress tree unless LITERT_TORCH_SHOW_PROGRESS=n; restore the caller's setting."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    old = os.environ.get(key)
    os.environ[key] = "y" if show else "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


@functools.cache
def _named_class() -> type:
    import torch

    class NamedOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, audio: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
            return dict(zip((t.name for t in self.inner.contract.outputs), self.inner(audio, video)))

    return NamedOutputs


def _named_module(model: Any) -> Any:
    """The model with dict outputs, so the .tflite signature names its tensors audio/video -> sync_probs/
    correlation (and the embeddings, where exported) and the runtime binds by name instead of by index
    (litert-torch orders outputs freely)."""
    return _named_class()(model).eval()


def fold_batchnorm(model: Any) -> Any:
    """An eval copy of ``model`` with every Conv -> BatchNorm pair inside an ``nn.Sequential`` (what
    ``conv_bn_act`` builds) fused into one conv, the BatchNorm replaced by Identity."""
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if type(norm) is pairs.get(type(conv)) and norm.running_mean is not None:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return folded


_CONVERTED: dict[tuple[str, int], bytes] = {}  # (model digest, T) -> float .tflite; exporting several precisions
_CONVERTED_MAX = 4                            # of one model converts each bucket once per process


def convert_bucket(model: Any, frames: int, path: Path, progress: bool = False) -> Path:
    """litert-torch conversion of ``model`` (BatchNorm folded) at a fixed T = ``frames``, batch 1, float32."""
    require("litert_torch", "tflite", "LiteRT export")
    import litert_torch

    from edge_sync.exporters.onnx import sample_inputs

    key = (model_digest(model), frames)
    if key in _CONVERTED:
        path.write_bytes(_CONVERTED[key])
        return path
    audio, video = sample_inputs(model.eval(), frames)
    log.info("converting to LiteRT at T=%d", frames)
    with _litert_progress(progress):
        edge = litert_torch.convert(_named_module(fold_batchnorm(model)),
                                    sample_kwargs={INPUTS[0]: audio, INPUTS[1]: video})
        edge.export(str(path))
    while len(_CONVERTED) >= _CONVERTED_MAX:
        _CONVERTED.pop(next(iter(_CONVERTED)))
    _CONVERTED[key] = path.read_bytes()
    return path


# ---------------------------------------------------------------- compact files
def compact_tflite(src: Path, dst: Path) -> None:
    """Rewrite a .tflite without internal tensor names and with shared identical zero-point vectors.

    Names are debugging aids (the signature keeps its own); per-channel INT8 stores an int64 zero point per
    channel for every weight and bias, almost all zeros, so sharing equal vectors saves ~15% of an INT8 file.
    Flatbuffers allow several tables to reference one vector; the interpreter only reads them.
    """
    import flatbuffers
    from ai_edge_litert.tools import flatbuffer_utils

    class SharingBuilder(flatbuffers.Builder):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            self.seen: dict[bytes, int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # flatbuffers' method name
            if x.dtype != np.int64:  # only zero points are int64 vectors in the schema
                return super().CreateNumpyVector(x)
            key = x.tobytes()
            if key not in self.seen:
                self.seen[key] = super().CreateNumpyVector(x)
            return self.seen[key]

    model = flatbuffer_utils.read_model(str(src))
    for graph in model.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        for i, tensor in enumerate(graph.tensors):
            if i not in keep:
                tensor.name = f"t{i}"
    model.description = None
    builder = SharingBuilder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))


# ---------------------------------------------------------------- FP16
def to_fp16(src: Path, dst: Path) -> None:
    """float16 weights for every conv / fully-connected layer, float32 compute and I/O (ai-edge-quantizer's
    float casting: the runtime dequantizes the weights once at load, so outputs stay FP32-accurate)."""
    require("ai_edge_quantizer", "tflite", "LiteRT FP16 export")
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    op = qtyping.TFLOperationName
    config = qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
    q = quantizer.Quantizer(str(src))
    for name in (op.CONV_2D, op.DEPTHWISE_CONV_2D, op.FULLY_CONNECTED):
        q.update_quantization_recipe(regex=".*", operation_name=name, op_config=config,
                                     algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    q.quantize(enable_progress_bar=False, enable_progress_report=False).export_model(str(dst), overwrite=True)


# ---------------------------------------------------------------- INT8
def int8_quantizer(src: Path, recipe: Int8Recipe) -> Any:
    """An ai-edge-quantizer Quantizer for ``src`` loaded with ``recipe`` (later rules override earlier ones)."""
    require("ai_edge_quantizer", "tflite", "LiteRT INT8 export")
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    op = qtyping.TFLOperationName
    unknown = [n for n in recipe.int8_ops if n not in op.__members__]
    if unknown:
        raise EdgeSyncError(f"INT8 recipe names ops ai-edge-quantizer does not know: {', '.join(unknown)}")
    q = quantizer.Quantizer(str(src))
    if recipe.weight_only_scopes:
        q.add_weight_only_config(regex=recipe.weight_only_scopes, operation_name=op.CONV_2D,
                                 num_bits=recipe.weight_bits)
    for name in recipe.int8_ops:
        q.add_static_config(regex=recipe.int8_scopes, operation_name=op[name], activation_num_bits=8,
                            weight_num_bits=recipe.weight_bits)
    if recipe.float_scopes:
        q.update_quantization_recipe(regex=recipe.float_scopes, operation_name=op.ALL_SUPPORTED,
                                     algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return q


def _chunks(pairs: Iterable[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[list[dict[str, np.ndarray]]]:
    chunk: list[dict[str, np.ndarray]] = []
    for audio, video in pairs:
        chunk.append({INPUTS[0]: audio, INPUTS[1]: video})
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def calibrate(src: Path, recipe: Int8Recipe, calib: Any, frames: int) -> dict[str, Any]:
    """Activation ranges of every tensor the recipe quantizes, over the whole calibration set at T=``frames``.

    Fed in chunks (a 50-frame clip is 7.5 MB of float video; the library materialises what it is given),
    each call resuming the previous statistics, so the result equals a single pass.
    """
    q = int8_quantizer(src, recipe)
    result = None
    count = 0
    for chunk in _chunks(calib.pairs(frames=frames), CALIB_CHUNK):
        with warnings.catch_warnings():  # calibration needs every intermediate tensor, which the interpreter warns of
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            result = q.calibrate({"serving_default": chunk}, previous_calibration_result=result,
                                 num_threads=os.cpu_count() or 1)
        count += len(chunk)
    if not result:
        raise EdgeSyncError(f"calibration set {calib.path} gave no statistics; rebuild it with edge-sync calibrate")
    log.info("INT8 calibration: %d clips of %d frames from %s", count, frames, calib.id)
    return result


def _tensor_names(path: Path) -> set[str]:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return {t.name.decode() if isinstance(t.name, bytes) else t.name for g in model.subgraphs for t in g.tensors}


def to_int8(src: Path, dst: Path, recipe: Int8Recipe, qsvs: dict[str, Any]) -> None:
    q = int8_quantizer(src, recipe)
    q.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False).export_model(str(dst), overwrite=True)


# ---------------------------------------------------------------- parity
def parity_inputs(model: Any, frames: int, calib: Any | None, count: int = PARITY_CLIPS
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """INT8 is checked on calibration clips (its ranges are only meaningful on real-like data); float
    precisions on the same seeded random inputs the ONNX exporter uses."""
    if calib is not None:
        return list(calib.pairs(frames=frames, limit=count))
    from edge_sync.exporters.onnx import sample_inputs

    pairs = [sample_inputs(model, frames, batch=1, seed=200 + frames + i) for i in range(count)]
    return [(a.numpy(), v.numpy()) for a, v in pairs]


def litert_parity(model: Any, files: dict[int, Path], calib: Any | None = None) -> dict[str, Any]:
    """Max abs error of every output vs PyTorch and per-frame offset agreement, per bucket, through the
    same session class the runtime uses (so int8 I/O scaling is exercised too)."""
    import torch

    names = tuple(t.name for t in model.contract.outputs)
    session = LiteRTSession(files, threads=os.cpu_count(), embeddings=model.contract.embeddings)
    report: dict[str, Any] = {"backend": "litert", "inputs": "calibration clips" if calib else "seeded random",
                              "buckets": {}}
    for frames in files:
        worst = {name: 0.0 for name in names}
        agree = []
        for audio, video in parity_inputs(model, frames, calib):
            with torch.inference_mode():
                ref = [x.numpy() for x in model(torch.from_numpy(audio), torch.from_numpy(video))]
            out = session.run(audio, video)
            for name, r, o in zip(names, ref, out):
                if o.shape != r.shape:
                    raise EdgeSyncError(f"LiteRT output {name} has shape {o.shape} at T={frames}, PyTorch gives "
                                        f"{r.shape}")
                worst[name] = max(worst[name], float(np.abs(o - r).max()))
            agree.append(float((out[0].argmax(1) == ref[0].argmax(1)).mean()))
        report["buckets"][f"t{frames}"] = {"max_abs_err": worst, "frame_offset_agreement": float(np.mean(agree))}
    per = report["buckets"].values()
    report["max_abs_err"] = {n: max(b["max_abs_err"][n] for b in per) for n in names}
    report["frame_offset_agreement"] = float(min(b["frame_offset_agreement"] for b in per))
    return report


# ---------------------------------------------------------------- export
def check_buckets(buckets: Any, min_frames: int) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(t) for t in buckets}))
    except (TypeError, ValueError) as exc:
        raise EdgeSyncError(f"buckets must be clip lengths in video frames, e.g. 50,250; got {buckets!r}") from exc
    if not out or out[0] < max(1, min_frames):
        raise EdgeSyncError(f"buckets must be >= {max(1, min_frames)} frames (the model's minimum), got {buckets!r}")
    return out


def bucket_file(name: str, frames: int) -> str:
    return f"{name}_t{frames}.tflite"


def io_details(path: Path) -> dict[str, Any]:
    """dtype and (scale, zero point) of the signature's inputs/outputs, for devices that feed raw buffers."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    details = {**runner.get_input_details(), **runner.get_output_details()}
    return {k: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]],
                "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]} for k, d in details.items()}


def export_tflite(model: Any, out_dir: Path, precision: str = "fp32", name: str = "model",
                  source: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write ``NAME.tflite-PRECISION/`` with ``model_t{T}.tflite`` per bucket and a manifest (with the embedding
    outputs where the model's embeddings are separable: :mod:`edge_sync.models.embeddings`).

    Options: ``buckets`` (clip lengths, default 50 and 250 frames), ``calib`` (INT8: a calibration set or its
    path; default the shared synthetic set), ``recipe`` (INT8: an :class:`Int8Recipe`), ``parity`` (default
    True), ``progress`` (show litert-torch's progress tree).
    """
    check_precision("tflite", precision, PRECISIONS)
    require("ai_edge_litert", "tflite", "checking LiteRT exports")
    model = with_embeddings(model.eval())
    buckets = check_buckets(options.get("buckets") or DEFAULT_BUCKETS, model.contract.min_frames)
    recipe: Int8Recipe = options.get("recipe") or Int8Recipe()
    calib = resolve_calibration(model, options.get("calib")) if precision == "int8" else None
    progress = bool(options.get("progress", False))

    def write(tmp: Path) -> dict[str, Any]:
        work = tmp / ".work"
        work.mkdir()
        files: dict[int, Path] = {}
        qsvs, calibrated_names, calibrated_at = None, None, []
        for frames in buckets:  # smallest first: INT8 calibrates on it once
            raw = convert_bucket(model, frames, work / f"float_t{frames}.tflite", progress)
            final = work / f"{precision}_t{frames}.tflite"
            if precision == "fp32":
                final = raw
            elif precision == "fp16":
                to_fp16(raw, final)
            else:
                names = _tensor_names(raw)
                if qsvs is None or names != calibrated_names:  # same graph names: the same ranges apply
                    qsvs, calibrated_names = calibrate(raw, recipe, calib, frames), names
                    calibrated_at.append(frames)
                to_int8(raw, final, recipe, qsvs)
            files[frames] = tmp / bucket_file(name, frames)
            compact_tflite(final, files[frames])
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
        entry = {"model": files[buckets[-1]].name, **{f"t{t}": p.name for t, p in files.items()}}
        extra: dict[str, Any] = {"entry": entry, "io": io_details(files[buckets[0]])}
        if precision == "int8":
            extra["quantization"] = {**recipe.to_dict(), "calibrated_at_frames": calibrated_at,
                                     "shared_across_buckets": len(calibrated_at) == 1}
        if options.get("parity", True):
            extra["parity_quick"] = litert_parity(model, files, calib)
        return extra

    manifest = base_manifest(model, source, ("litert-torch", "ai-edge-quantizer", "ai-edge-litert"), ["litert"],
                             time_range=TimeRange(min_frames=model.contract.min_frames, opt_frames=buckets[-1]),
                             dynamic=False, buckets=buckets, calibration=calib)
    return write_artifact(out_dir, name, "tflite", precision, write, manifest)


register_exporter(ExporterInfo(target="tflite", precisions=PRECISIONS, extra="tflite",
                               modules=("torch", "litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
                               export=export_tflite,
                               # static shapes: --buckets, not a time range; ai-edge-quantizer's own calibration
                               takes={"calib": INT8, "buckets": PRECISIONS},
                               notes="static shapes: one .tflite per time bucket (default 50 and 250 frames)"))
