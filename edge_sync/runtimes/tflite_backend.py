"""LiteRT backend: runs ``tflite`` artifacts, one static-shape interpreter per time bucket.

numpy and the interpreter only (never torch), so a device installs ``edge-sync[tflite]`` and nothing else.
The interpreter comes from ``ai_edge_litert`` or, where only that is installed (older Raspberry Pi / Coral
images), from ``tflite_runtime``.

Why buckets: LiteRT models have static shapes (DESIGN.md), so the exporter writes one file per clip length T
(video frames) and the manifest maps ``t{T}`` to it. This session runs a clip only when its T is exactly one
of those buckets; :class:`edge_sync.runtimes.api.Engine` windows and pads clips to bucket lengths itself.

Thread-safety: an Interpreter is not thread-safe, so each bucket's interpreter has its own lock. Concurrent
calls with different T run in parallel; calls with the same T take turns. Per-thread interpreters would run
same-T calls in parallel too, but multiply the tensor arena (tens of MB at T=250) by the thread count, which
is the wrong trade on the small devices this backend is for.

Quantized I/O: the INT8 exporter keeps float inputs and outputs, but a model with int8/int16 graph inputs or
outputs (a fully integer model from another tool) runs too: inputs are quantized and outputs dequantized with
each tensor's own scale and zero point, so callers always pass and get float32.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync.errors import EdgeSyncError, MissingExtraError
from edge_sync.runtimes.contract_check import reads_embeddings
from edge_sync.runtimes.registry import run_item_by_item
from edge_sync.spec import output_names

log = logging.getLogger(__name__)
INPUTS = ("audio", "video")
SIGNATURE = "serving_default"


class BucketError(EdgeSyncError, ValueError):
    """A clip's length is not one of the static lengths the LiteRT artifact was exported for."""


def interpreter_class() -> Callable[..., Any]:
    """``ai_edge_litert``'s Interpreter, else ``tflite_runtime``'s (same API), else a MissingExtraError."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError as exc:
            raise MissingExtraError("ai_edge_litert' or 'tflite_runtime", "litert",
                                    "running LiteRT (.tflite) artifacts") from exc
    return Interpreter


def bucket_files(manifest: Mapping[str, Any]) -> dict[int, str]:
    """``{T: relative file}`` from the manifest: ``entry['t{T}']`` for every T in ``time_range['buckets']``."""
    entry = manifest.get("entry", {})
    buckets = manifest.get("time_range", {}).get("buckets") or []
    files = {}
    for t in buckets:
        rel = entry.get(f"t{int(t)}")
        if rel is None:
            raise EdgeSyncError(f"the LiteRT manifest lists bucket T={t} but its entry has no 't{t}' file; "
                                "re-export the artifact")
        files[int(t)] = rel
    if not files:
        raise EdgeSyncError("the LiteRT manifest lists no time buckets (time_range.buckets); re-export the artifact "
                            "with edge-sync export --target tflite")
    return files


def quantize(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """float32 -> the tensor's integer type with its (scale, zero point); float tensors pass through."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise EdgeSyncError(f"input '{detail['name']}' is {dtype} without a quantization scale; this .tflite cannot "
                            "take float data, re-export it with edge-sync")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """The tensor's integer values back to float32 with its (scale, zero point); float32 passes through."""
    if np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(y, np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


@dataclass
class BucketRunner:
    """One bucket's interpreter, its signature runner and the lock that serialises calls into it."""

    frames: int
    path: Path
    threads: int | None
    names: tuple[str, ...] = output_names()  # the outputs ``run`` returns, in this order

    def __post_init__(self) -> None:
        make = interpreter_class()
        kwargs = {"num_threads": self.threads} if self.threads else {}
        self.interpreter = make(model_path=str(self.path), **kwargs)
        signatures = self.interpreter.get_signature_list()
        key = SIGNATURE if SIGNATURE in signatures else next(iter(signatures), None)
        if key is None or set(signatures[key]["inputs"]) != set(INPUTS) or not set(self.names) <= set(
                signatures[key]["outputs"]):
            raise EdgeSyncError(f"{self.path} has no signature with inputs {INPUTS} and outputs {self.names} "
                                f"(found {signatures}); it was not written by edge-sync's tflite exporter")
        self.runner = self.interpreter.get_signature_runner(key)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        self.lock = threading.Lock()

    def input_shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(s) for s in self.inputs[name]["shape"])

    def io_shapes(self) -> dict[str, tuple[int, ...]]:
        """This bucket's static input and output shapes, by signature name."""
        return {name: tuple(int(s) for s in detail["shape"])
                for details in (self.inputs, self.outputs) for name, detail in details.items()}

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        """Batch-1 float32 inputs of exactly this bucket's shapes -> float32 outputs: sync_probs, correlation
        (then audio_emb, video_emb where the session reads them)."""
        feeds = {"audio": quantize(audio, self.inputs["audio"]), "video": quantize(video, self.inputs["video"])}
        with self.lock:
            out = self.runner(**feeds)
            # the runner returns views of interpreter memory; copy before the next call may overwrite them
            return tuple(dequantize(np.array(out[n]), self.outputs[n]) for n in self.names)


class LiteRTSession:
    """``run(audio [B,1,F,4T], video [B,3,T,S,S])`` for T in the artifact's buckets; interpreters load lazily
    (a device that only runs 50-frame windows never allocates the 250-frame arena)."""

    def __init__(self, files: Mapping[int, Path], threads: int | None = None, embeddings: bool = False) -> None:
        """``embeddings``: the files also have the contract's embedding outputs, and ``run`` returns them too."""
        missing = [str(p) for p in files.values() if not Path(p).is_file()]
        if missing:
            raise EdgeSyncError(f"LiteRT model files are missing: {', '.join(missing)}; copy the whole artifact")
        self.files = {int(t): Path(p) for t, p in sorted(files.items())}
        self.threads = threads
        self.embeddings = embeddings
        self.names = output_names(embeddings)
        self._runners: dict[int, BucketRunner] = {}
        self._create_lock = threading.Lock()

    @property
    def buckets(self) -> tuple[int, ...]:
        return tuple(self.files)

    def runner(self, frames: int) -> BucketRunner:
        """The interpreter for a bucket, created on first use (once, even under concurrent first calls)."""
        if frames not in self.files:
            raise BucketError(f"this LiteRT artifact runs clips of exactly {self._bucket_text()} video frames, got "
                              f"T={frames}; run it through edge_sync.load(...).run, which windows and pads clips "
                              f"to these lengths, or re-export with buckets that include {frames}")
        runner = self._runners.get(frames)
        if runner is None:
            with self._create_lock:
                runner = self._runners.get(frames)
                if runner is None:
                    runner = BucketRunner(frames, self.files[frames], self.threads, self.names)
                    self._runners[frames] = runner
                    log.info("LiteRT: loaded %s for T=%d (%s threads)", runner.path.name, frames,
                             self.threads or "default")
        return runner

    def io_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shortest bucket's shapes (the cheapest interpreter to load): every bucket comes from one model."""
        return self.runner(self.buckets[0]).io_shapes()

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        video = np.asarray(video)
        audio = np.asarray(audio)
        if video.ndim != 5 or audio.ndim != 4 or audio.shape[0] != video.shape[0]:
            raise EdgeSyncError(f"expected audio [B,1,F,4T] and video [B,3,T,S,S] with the same B, got audio "
                                f"{audio.shape} and video {video.shape}")
        runner = self.runner(int(video.shape[2]))
        for name, x in (("audio", audio), ("video", video)):
            want = runner.input_shape(name)
            if tuple(x.shape[1:]) != want[1:]:
                raise EdgeSyncError(f"{name} has shape {tuple(x.shape)}, the T={runner.frames} LiteRT model takes "
                                    f"[B, {', '.join(map(str, want[1:]))}]")
        return run_item_by_item(runner.run, audio, video)

    def _bucket_text(self) -> str:
        return " or ".join(str(t) for t in self.files)


def create(artifact: Any, threads: int | None) -> LiteRTSession:
    """Session factory named in the backend registry: every bucket file of the artifact, lazily loaded."""
    files = {t: artifact.file(f"t{t}") for t in bucket_files(artifact.manifest)}
    return LiteRTSession(files, threads, embeddings=reads_embeddings(artifact))
