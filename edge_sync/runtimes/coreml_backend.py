"""CoreML backend: runs a ``coreml`` artifact's .mlpackage with coremltools' MLModel.predict (macOS only).

numpy + coremltools only (no torch), like every runtime backend. CoreML cannot tie the audio time axis to the
video one (audio = 4 T), so this backend checks the pair before predicting: a mismatched pair would otherwise
run and give wrong offsets or fail deep inside CoreML. The package takes batch 1, so batches run clip by clip.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sync.errors import EdgeSyncError
from edge_sync.runtimes.contract_check import reads_embeddings
from edge_sync.runtimes.registry import run_item_by_item
from edge_sync.spec import output_names

log = logging.getLogger(__name__)

COMPUTE_UNITS_ENV = "EDGE_SYNC_COREML_COMPUTE_UNITS"  # ALL (default), CPU_ONLY, CPU_AND_GPU, CPU_AND_NE


def require_macos(platform: str = sys.platform) -> None:
    """CoreML's predict exists only on Apple platforms; say so, and what runs here instead."""
    if platform != "darwin":
        raise EdgeSyncError(
            f"CoreML prediction needs macOS (this machine is {platform}): run this coreml artifact on a Mac or "
            "iPhone, or here use a backend that runs on this machine, e.g. export with "
            "'edge-sync export --target onnx' and run it on onnxruntime")


def compute_units(name: str | None = None) -> Any:
    """The CoreML compute units to use: the argument, else $EDGE_SYNC_COREML_COMPUTE_UNITS, else ALL."""
    import coremltools as ct

    name = (name or os.environ.get(COMPUTE_UNITS_ENV) or "ALL").upper()
    if name not in ct.ComputeUnit.__members__:
        raise EdgeSyncError(f"unknown CoreML compute units {name!r}; use one of "
                            f"{', '.join(ct.ComputeUnit.__members__)}")
    return ct.ComputeUnit[name]


@dataclass(frozen=True)
class InputLimits:
    """What the package accepts, from the manifest: CoreML checks each time range alone, not audio = 4 T."""

    steps: int = 4
    min_frames: int = 1
    max_frames: int | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> InputLimits:
        time_range = manifest.get("time_range", {})
        shapes = manifest.get("coreml", {}).get("flexible_shapes", {})
        hi = time_range.get("max_frames")
        return cls(int(shapes.get("audio_steps_per_frame", 4)), int(time_range.get("min_frames", 1)),
                   None if hi is None else int(hi))

    def check(self, audio: np.ndarray, video: np.ndarray) -> int:
        """T of a valid pair; refuse pairs the package's separate ranges would accept but that mean nothing."""
        if audio.ndim < 2 or video.ndim != 5 or audio.shape[0] != video.shape[0]:
            raise EdgeSyncError(f"coreml backend takes audio [B,1,F,{self.steps}T] and video [B,3,T,S,S] with the "
                                f"same B, got {audio.shape} and {video.shape}")
        frames = int(video.shape[2])
        if audio.shape[-1] != self.steps * frames:
            raise EdgeSyncError(f"audio has {audio.shape[-1]} steps for {frames} video frames; this artifact needs "
                                f"exactly {self.steps} per frame ({self.steps * frames})")
        if frames < self.min_frames or (self.max_frames is not None and frames > self.max_frames):
            raise EdgeSyncError(f"{frames} frames is outside this artifact's time range [{self.min_frames}, "
                                f"{self.max_frames}]; window the clip (edge_sync.load does) or re-export with "
                                "a wider --max-frames")
        return frames


class CoreMLSession:
    """One loaded (compiled) MLModel. ``run`` holds a lock around predict: coremltools does not document
    MLModel.predict as thread-safe, and the Engine promises thread-safe runs."""

    def __init__(self, path: str, manifest: dict[str, Any], units: Any, embeddings: bool = False) -> None:
        """``embeddings``: the package also has the contract's embedding outputs, and ``run`` returns them too."""
        import coremltools as ct

        self.path = path
        self.embeddings = embeddings
        self.names = output_names(embeddings)
        self.units = units
        self.limits = InputLimits.from_manifest(manifest)
        self.model = ct.models.MLModel(path, compute_units=units)
        self._lock = threading.Lock()
        log.info("coreml: loaded %s on %s", path, units.name)

    def _predict_one(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        feeds = {"audio": np.ascontiguousarray(audio, np.float32), "video": np.ascontiguousarray(video, np.float32)}
        with self._lock:
            out = self.model.predict(feeds)
        return tuple(np.asarray(out[name], np.float32) for name in self.names)

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        """sync_probs, correlation (then audio_emb, video_emb with ``embeddings``), batch by batch-1 predicts."""
        self.limits.check(audio, video)
        return run_item_by_item(self._predict_one, audio, video)


def create(artifact: Any, threads: int | None, units: str | None = None) -> CoreMLSession:
    """A session for a coreml artifact. ``threads`` has no CoreML equivalent (CoreML schedules itself)."""
    require_macos()
    from edge_sync._deps import require

    require("coremltools", "coreml", "the coreml backend")
    if threads:
        log.info("coreml: ignoring threads=%s (CoreML has no thread setting; pick compute units with $%s)",
                 threads, COMPUTE_UNITS_ENV)
    return CoreMLSession(str(artifact.file("model")), artifact.manifest, compute_units(units),
                         embeddings=reads_embeddings(artifact))
