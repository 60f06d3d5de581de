"""A video file -> model-ready (audio, video) segments, one per contiguous run of each face track.

Streams the video once (decode -> face tracker -> crops) so memory holds crops, not frames, and computes
the MFCC of the whole soundtrack once; each segment slices it at 4 MFCC steps per frame. numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sync.errors import MediaError
from edge_sync.features.faces import DEFAULT_DETECTOR, FaceTrack, track_faces
from edge_sync.features.media import MediaInfo, iter_frames, probe, read_audio
from edge_sync.features.mfcc import audio_to_mfcc_input
from edge_sync.features.video import to_model_input
from edge_sync.spec import LEGACY_FACE, MOUTH, SAMPLES_PER_FRAME, VideoPreprocessing

CROP_FOR_PREPROCESSING = {MOUTH.name: "mouth", LEGACY_FACE.name: "legacy_face"}


@dataclass
class ClipSegment:
    """Frames [start, start + frames) of one face track, with no gap, as model inputs.

    Crops stay uint8 (a quarter of float32's memory); ``video`` / ``video_window`` normalise on demand.
    """

    track_id: int
    start: int
    frames: int
    audio: np.ndarray  # float32 [1, 1, 13, 4 * frames]
    crops: np.ndarray  # uint8 [frames, S, S, 3] RGB
    preprocessing: VideoPreprocessing

    @property
    def video(self) -> np.ndarray:
        """float32 [1, 3, frames, S, S] model input for the whole segment."""
        return to_model_input(self.crops, self.preprocessing)

    def video_window(self, lo: int, hi: int) -> np.ndarray:
        """float32 [1, 3, hi - lo, S, S] for frames lo..hi-1 of the segment."""
        return to_model_input(self.crops[lo:hi], self.preprocessing)


@dataclass
class PreparedClip:
    path: Path
    info: MediaInfo
    num_frames: int
    segments: list[ClipSegment]
    frames_without_face: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def main_segment(self) -> ClipSegment:
        """The longest segment: usually the main speaker's longest uninterrupted stretch."""
        return max(self.segments, key=lambda s: s.frames)

    def track_ids(self) -> list[int]:
        return sorted({s.track_id for s in self.segments})


def consecutive_runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i, j) of consecutive frame numbers."""
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    edges = [0, *breaks.tolist(), len(frames)]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def _segments(track: FaceTrack, mfcc: np.ndarray, crop: str, preprocessing: VideoPreprocessing,
              min_frames: int) -> list[ClipSegment]:
    crops = getattr(track, crop)
    out = []
    for i, j in consecutive_runs(track.frames):
        if j - i < min_frames:
            continue
        start = int(track.frames[i])
        audio = np.ascontiguousarray(mfcc[..., 4 * start:4 * (start + j - i)])
        out.append(ClipSegment(track.track_id, start, j - i, audio, crops[i:j], preprocessing))
    return out


def probe_for_sync(path: str | Path) -> MediaInfo:
    """Probe a file and refuse it up front unless it has both a video and an audio stream."""
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{path} has no video stream; lip sync needs a visible face")
    if not info.has_audio:
        raise MediaError(f"{path} has no audio stream; lip sync needs the soundtrack")
    return info


def prepare_clip(path: str | Path, preprocessing: VideoPreprocessing = MOUTH, detector: str = DEFAULT_DETECTOR,
                 detect_every: int = 5, min_frames: int = 5) -> PreparedClip:
    """Decode, track faces, crop and compute MFCC for a whole file.

    Raises MediaError (no audio/video, corrupt file) or NoFaceError (no usable face track).
    """
    info = probe_for_sync(path)
    crop = CROP_FOR_PREPROCESSING[preprocessing.name]
    tracks = track_faces(iter_frames(path), detector=detector, detect_every=detect_every, crops=(crop,))
    total = tracks.num_frames
    audio = read_audio(path)
    audio = np.pad(audio, (0, max(0, total * SAMPLES_PER_FRAME - len(audio))))  # a short soundtrack ends in silence
    mfcc = audio_to_mfcc_input(audio, total)
    segments = [s for t in tracks for s in _segments(t, mfcc, crop, preprocessing, min_frames)]
    if not segments:
        raise MediaError(f"{path}: face tracks were found but none has {min_frames} consecutive frames")
    return PreparedClip(Path(path), info, total, segments, tracks.frames_without_face)
