"""Calibration sets: versioned, hashed folders of preprocessed (audio, video) pairs for every INT8 exporter.

One set feeds onnxruntime's calibrators, NNCF, ai-edge-quantizer and the TensorRT Q/DQ graph alike, so INT8
artifacts made from it are comparable, and each artifact's manifest names the set's id and content hash.

Layout of ``CALIB_DIR/``: ``data.npz`` with ``audio`` float32 [N, 1, F, 4T] (the contract's audio features) and
``crops`` uint8 [N, T, S, S, 3] (RGB crops before normalisation: a quarter of the float size, exact), and
``manifest.json`` (format version, spec version, id, content hash, source, preprocessing, per-input
statistics). numpy only, so a device-side tool can read a set without PyTorch.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_sync._manifest import MANIFEST, read_manifest
from edge_sync.errors import EdgeSyncError
from edge_sync.spec import AUDIO_INPUTS, PREPROCESSING, SPEC_VERSION, ModelContract, VideoPreprocessing

log = logging.getLogger(__name__)
CALIB_FORMAT = "edge-sync-calibration"
CALIB_FORMAT_VERSION = 1
DATA_FILE = "data.npz"


class CalibrationError(EdgeSyncError, ValueError):
    """A calibration set is missing, corrupted, malformed or made for another model contract."""


def content_hash(audio: np.ndarray, crops: np.ndarray) -> str:
    """sha256 over dtype, shape and bytes of both arrays: the same data gives the same id on any machine."""
    h = hashlib.sha256()
    for name, arr in (("audio", audio), ("crops", crops)):
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def input_statistics(x: np.ndarray) -> dict[str, float]:
    """Range and spread of one input as the model sees it: what a calibrator will turn into a scale."""
    x = np.asarray(x, np.float64).ravel()
    lo, hi = np.percentile(x, [0.1, 99.9])
    return {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "std": float(x.std()),
            "p0.1": float(lo), "p99.9": float(hi)}


@dataclass(frozen=True)
class CalibrationSet:
    """A loaded, verified set. ``pairs()`` yields model-ready batch-1 float32 inputs."""

    path: Path
    manifest: dict[str, Any]
    audio: np.ndarray  # float32 [N, 1, F, 4T]
    crops: np.ndarray  # uint8 [N, T, S, S, 3]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def sha256(self) -> str:
        return self.manifest["content_sha256"]

    @property
    def frames(self) -> int:
        return int(self.crops.shape[1])

    @property
    def preprocessing(self) -> VideoPreprocessing:
        return PREPROCESSING[self.manifest["preprocessing"]["name"]]

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def reference(self) -> dict[str, Any]:
        """What an artifact manifest records about the set it was calibrated on."""
        return {"id": self.id, "content_sha256": self.sha256, "count": len(self), "frames": self.frames,
                "source": self.manifest.get("source", {}), "path": str(self.path)}

    def check_contract(self, contract: ModelContract) -> None:
        """Refuse a set whose audio features or crops differ from what the model takes."""
        if self.manifest["audio_input"] != contract.audio_input:
            raise CalibrationError(f"calibration set {self.path} holds {self.manifest['audio_input']} audio, the model "
                                   f"takes {contract.audio_input}; build a set for it with edge-sync calibrate")
        if self.preprocessing.name != contract.video.name:
            raise CalibrationError(f"calibration set {self.path} holds {self.preprocessing.name} crops, the model "
                                   f"takes {contract.video.name}; build one with: edge-sync calibrate --preprocessing "
                                   f"{contract.video.name}")

    def pairs(self, frames: int | None = None, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(audio [1,1,F,4T'], video [1,3,T',S,S]) float32 per clip, T' = ``frames`` (default the set's T).

        A static-shape target asks for its own T': shorter takes the first T' frames; longer joins consecutive
        clips along time (calibration needs value ranges, not continuity).
        """
        frames = frames or self.frames
        steps = self.audio.shape[-1] // self.frames
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            need = -(-frames // self.frames)
            idx = [(i + j) % len(self) for j in range(need)]
            crops = np.concatenate([self.crops[j] for j in idx], axis=0)[:frames]
            audio = np.concatenate([self.audio[j] for j in idx], axis=-1)[..., :frames * steps]
            video = self.preprocessing.normalise(crops)
            yield (np.ascontiguousarray(audio[None], np.float32), video[None])


def _validate(audio: np.ndarray, crops: np.ndarray, audio_input: str, preprocessing: VideoPreprocessing,
              where: str) -> None:
    steps = AUDIO_INPUTS[audio_input].steps_per_frame
    if crops.dtype != np.uint8 or crops.ndim != 5 or crops.shape[-1] != 3 or crops.shape[2:4] != (
            preprocessing.size, preprocessing.size):
        raise CalibrationError(f"{where}: crops must be uint8 [N, T, {preprocessing.size}, {preprocessing.size}, 3], "
                               f"got {crops.dtype} {crops.shape}; rebuild the set with edge-sync calibrate")
    n, t = crops.shape[:2]
    if audio.dtype != np.float32 or audio.ndim != 4 or audio.shape[0] != n or audio.shape[-1] != steps * t:
        raise CalibrationError(f"{where}: audio must be float32 [{n}, 1, F, {steps * t}] for {n} clips of {t} frames, "
                               f"got {audio.dtype} {audio.shape}; rebuild the set with edge-sync calibrate")
    if n == 0:
        raise CalibrationError(f"{where}: the calibration set is empty")
    if not np.isfinite(audio).all():
        raise CalibrationError(f"{where}: the audio features hold NaN or inf; rebuild the set from clean sources")


def write_calibration_set(out_dir: str | Path, audio: np.ndarray, crops: np.ndarray, source: dict[str, Any],
                          audio_input: str = "mfcc", preprocessing: VideoPreprocessing | None = None) -> Path:
    """Write a set atomically (temp folder + rename) and return its folder."""
    from edge_sync import __version__

    preprocessing = preprocessing or PREPROCESSING["mouth112"]
    audio = np.ascontiguousarray(audio, np.float32)
    crops = np.ascontiguousarray(crops)
    _validate(audio, crops, audio_input, preprocessing, str(out_dir))
    digest = content_hash(audio, crops)
    kind = source.get("kind", "custom")
    manifest = {
        "format": CALIB_FORMAT, "format_version": CALIB_FORMAT_VERSION, "spec_version": SPEC_VERSION,
        "id": f"{kind}-{crops.shape[0]}x{crops.shape[1]}-{digest[:12]}", "content_sha256": digest,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "edge_sync": __version__,
        "source": source, "audio_input": audio_input,
        "preprocessing": {"name": preprocessing.name, "size": preprocessing.size,
                          "colour_order": preprocessing.colour_order},
        "count": int(crops.shape[0]), "frames": int(crops.shape[1]),
        "statistics": {"audio": input_statistics(audio),
                       "video": input_statistics(preprocessing.normalise(crops[: min(8, len(crops))].reshape(
                           -1, *crops.shape[2:])))},
    }
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        np.savez(tmp / DATA_FILE, audio=audio, crops=crops)  # uncompressed: loads fast, hashes are stable
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            if not (out_dir / MANIFEST).is_file():
                raise CalibrationError(f"{out_dir} exists and is not a calibration set; choose another -o")
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("calibration set %s written to %s", manifest["id"], out_dir)
    return out_dir


def load_calibration_set(path: str | Path, contract: ModelContract | None = None) -> CalibrationSet:
    """Open a set, check format, spec version, shapes, finiteness and content hash (and the model contract)."""
    path = Path(path)
    if not (path / DATA_FILE).is_file():
        raise CalibrationError(f"{path} is not a calibration set (needs {MANIFEST} and {DATA_FILE}); build one with: "
                               "edge-sync calibrate --source synthetic -o DIR")
    manifest = read_manifest(path, CALIB_FORMAT, CALIB_FORMAT_VERSION, CalibrationError, "calibration set",
                             "rebuild it with: edge-sync calibrate -o DIR")
    try:
        with np.load(path / DATA_FILE, allow_pickle=False) as data:
            audio, crops = data["audio"], data["crops"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CalibrationError(f"{path / DATA_FILE} cannot be read ({exc}); it is truncated or corrupt: rebuild "
                               "the set") from exc
    preprocessing = PREPROCESSING.get(manifest.get("preprocessing", {}).get("name", ""))
    if preprocessing is None or manifest.get("audio_input") not in AUDIO_INPUTS:
        raise CalibrationError(f"{path / MANIFEST} names an unknown preprocessing or audio input; rebuild the set")
    _validate(audio, crops, manifest["audio_input"], preprocessing, str(path))
    if content_hash(audio, crops) != manifest.get("content_sha256"):
        raise CalibrationError(f"{path}: the data does not match the manifest's content hash (modified or corrupt); "
                               "rebuild the set")
    calib = CalibrationSet(path, manifest, audio, crops)
    if contract is not None:
        calib.check_contract(contract)
    return calib
