"""Where calibration clips come from: a registry of sources (synthetic talking mouths, a folder of videos).

Each source returns (audio [N,1,F,4T] float32, crops [N,T,S,S,3] uint8, source description); the set is then
written by :func:`edge_sync.calibration.sets.write_calibration_set`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_sync.calibration.sets import CalibrationError, CalibrationSet, load_calibration_set, write_calibration_set
from edge_sync.spec import MOUTH, PREPROCESSING, ModelContract, VideoPreprocessing

log = logging.getLogger(__name__)
DEFAULT_COUNT = 64
DEFAULT_FRAMES = 50
DEFAULT_SEED = 4242  # not a training or hold-out evaluation seed
Source = Callable[..., tuple[np.ndarray, np.ndarray, dict[str, Any]]]


def synthetic_source(count: int, frames: int, seed: int, preprocessing: VideoPreprocessing, progress: bool = True,
                     **_: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Rendered talking mouths over espeak-ng speech from the training split (never the hold-out voices, so
    evaluating an INT8 model on the hold-out set stays honest)."""
    from tqdm import tqdm

    from edge_sync.data.synthetic import make_clip

    if preprocessing.name != MOUTH.name:
        raise CalibrationError(f"synthetic clips are {MOUTH.name} mouth crops; for {preprocessing.name} models "
                               "build the set from real videos: edge-sync calibrate --source DIR")
    clips = [make_clip(seed, i, "train", frames) for i in tqdm(range(count), desc="calibration clips",
                                                                 disable=not progress, unit="clip")]
    audio = np.stack([c.audio for c in clips])
    crops = np.stack([c.frames_uint8 for c in clips])
    return audio, crops, {"kind": "synthetic", "seed": seed, "split": "train"}


def folder_source(count: int, frames: int, seed: int, preprocessing: VideoPreprocessing, root: Path,
                  progress: bool = True, **_: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Windows of ``frames`` frames cut from the face tracks of videos under ``root`` (the real decode and face
    pipeline), taken round-robin over files in a seeded order so one long video cannot fill the set."""
    from tqdm import tqdm

    from edge_sync.data.folders import crops_from_model_input
    from edge_sync.features.media import find_videos
    from edge_sync.errors import EdgeSyncError
    from edge_sync.features.clip import prepare_clip

    videos = find_videos(root)
    if not videos:
        raise CalibrationError(f"no video files under {root}")
    order = np.random.default_rng(seed).permutation(len(videos))
    per_file: list[list[tuple[np.ndarray, np.ndarray]]] = []
    skipped = []
    for i in tqdm(order, desc="decoding videos", disable=not progress, unit="file"):
        try:
            prepared = prepare_clip(videos[i], preprocessing=preprocessing)
        except EdgeSyncError as exc:
            skipped.append(f"{videos[i].name}: {exc}")
            continue
        windows = []
        for seg in prepared.segments:
            steps = seg.audio.shape[-1] // seg.frames
            for lo in range(0, seg.frames - frames + 1, frames):
                crops = crops_from_model_input(seg.video_window(lo, lo + frames), preprocessing)
                windows.append((seg.audio[0, :, :, lo * steps:(lo + frames) * steps], crops))
        if windows:
            per_file.append(windows)
    for s in skipped:
        log.warning("calibration: skipped %s", s)
    picked: list[tuple[np.ndarray, np.ndarray]] = []
    depth = 0
    while len(picked) < count and any(depth < len(w) for w in per_file):
        picked.extend(w[depth] for w in per_file if depth < len(w))
        depth += 1
    if not picked:
        raise CalibrationError(f"no face track of {frames}+ frames in the videos under {root} ({len(skipped)} skipped)")
    picked = picked[:count]
    if len(picked) < count:
        log.warning("calibration: only %d windows of %d frames available under %s (asked %d)", len(picked), frames,
                    root, count)
    audio = np.stack([a for a, _ in picked]).astype(np.float32)
    crops = np.stack([c for _, c in picked])
    return audio, crops, {"kind": "folder", "root": str(root), "files": len(videos), "skipped": len(skipped),
                          "seed": seed}


SOURCES: dict[str, Source] = {"synthetic": synthetic_source, "folder": folder_source}


def _source_maker(source: str | Path) -> tuple[Source, dict[str, Any]]:
    """The registered maker for one source ('synthetic' or a folder of videos) and its extra arguments."""
    if str(source) in SOURCES and not Path(str(source)).is_dir():
        return SOURCES[str(source)], {}
    if Path(source).is_dir():
        return SOURCES["folder"], {"root": Path(source)}
    raise CalibrationError(f"calibration source must be 'synthetic' or a folder of videos, got {source!r}")


def build_calibration_set(source: str | Path | Sequence[str | Path], out_dir: str | Path, count: int = DEFAULT_COUNT,
                          frames: int = DEFAULT_FRAMES, seed: int = DEFAULT_SEED, preprocessing: str = MOUTH.name,
                          progress: bool = True) -> Path:
    """``source`` is 'synthetic', a folder of videos, or several of them: a mix takes an equal share of ``count``
    from each (the first ones take the remainder), so one INT8 artifact can be calibrated on both the synthetic
    protocol's mouths and real faces. Writes the set to ``out_dir`` and returns it."""
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise CalibrationError("no calibration source given")
    if count < len(sources) or frames < 1:
        raise CalibrationError(f"count must be >= the number of sources ({len(sources)}) and frames >= 1")
    if preprocessing not in PREPROCESSING:
        raise CalibrationError(f"unknown preprocessing {preprocessing!r}; known: {', '.join(PREPROCESSING)}")
    prep = PREPROCESSING[preprocessing]
    makers = [_source_maker(s) for s in sources]  # every source checked before any clip is made
    shares = [count // len(sources) + (i < count % len(sources)) for i in range(len(sources))]
    parts = [make(count=share, frames=frames, seed=seed, preprocessing=prep, progress=progress, **extra)
             for (make, extra), share in zip(makers, shares)]
    if len(parts) == 1:
        audio, crops, described = parts[0]
    else:
        audio = np.concatenate([a for a, _, _ in parts])
        crops = np.concatenate([c for _, c, _ in parts])
        described = {"kind": "mix", "parts": [{**d, "count": len(c)} for _, c, d in parts]}
    return write_calibration_set(out_dir, audio, crops, described, audio_input="mfcc", preprocessing=prep)


def default_calibration_dir() -> Path:
    from edge_sync.data.synthetic import default_cache_dir

    return Path(os.environ.get("EDGE_SYNC_CALIB_DIR", default_cache_dir() / "calibration"))


def default_calibration_set(contract: ModelContract, count: int = DEFAULT_COUNT, frames: int = DEFAULT_FRAMES,
                            seed: int = DEFAULT_SEED, progress: bool = True) -> CalibrationSet:
    """The synthetic set INT8 export uses when no ``--calib`` is given: built once into the cache, then reused
    (and re-verified) so every INT8 artifact made without ``--calib`` shares it."""
    path = default_calibration_dir() / f"synthetic-{contract.video.name}-s{seed}-{count}x{frames}"
    if not (path / "manifest.json").is_file():
        log.warning("no calibration set given: building the default synthetic one at %s", path)
        build_calibration_set("synthetic", path, count=count, frames=frames, seed=seed,
                              preprocessing=contract.video.name, progress=progress)
    return load_calibration_set(path, contract)
