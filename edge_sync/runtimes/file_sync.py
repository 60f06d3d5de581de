"""``Engine.sync_file``: decode -> face tracker -> one sync stream per uninterrupted face-track segment.

The video is decoded once and crops flow straight into :class:`SyncStream`s, which keep only the frames a later
window needs, so memory does not grow with the clip's length (no clip-long crop or frame arrays). Segments are
cut where a track has a gap and dropped below ``min_frames``, exactly as :func:`edge_sync.features.clip.prepare_clip`
cuts them, and each stream starts with the whole soundtrack's pre-emphasis state, so results equal running the
prepared clip's segments through :meth:`Engine.run_segment`. numpy (+ PyAV and OpenCV for media and faces) only.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync.errors import NoFaceError
from edge_sync.features.clip import CROP_FOR_PREPROCESSING, probe_for_sync
from edge_sync.features.faces import DEFAULT_DETECTOR, CropResult, FaceTracker
from edge_sync.features.media import iter_frames, read_audio
from edge_sync.spec import SAMPLES_PER_FRAME

log = logging.getLogger(__name__)
FILE_HOP_FRAMES = 50  # frames emitted per model call: bounded memory, ~2x the compute of one pass
TAIL = 240  # samples after a segment's last frame that its last MFCC window reads


@dataclass
class _Segment:
    """One uninterrupted run of a track being streamed."""

    track_id: int
    start: int
    stream: Any
    next_frame: int
    pending: dict[int, np.ndarray] = field(default_factory=dict)  # out-of-order crops waiting for their turn
    motion: list[float] = field(default_factory=list)  # per frame: mean |change| of the mouth crop, 0..255
    centres: list[tuple[float, float, float]] = field(default_factory=list)  # per frame: box cx, cy, width
    last_crop: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return self.next_frame - self.start


class FileSyncer:
    """Routes tracker results to per-segment streams; see the module docstring."""

    def __init__(self, engine: Any, audio: np.ndarray, crop: str, min_frames: int) -> None:
        self.engine, self.audio, self.crop, self.min_frames = engine, audio, crop, min_frames
        self.open: dict[int, _Segment] = {}
        self.closed: list[tuple[int, int, Any, dict[str, np.ndarray]]] = []  # (track, start, SyncResult, cues)

    def _start(self, track_id: int, frame: int) -> _Segment:
        first = frame * SAMPLES_PER_FRAME
        # continue the whole soundtrack's pre-emphasis, as the offline MFCC does
        previous = None if first == 0 else float(self.audio[first - 1]) if first - 1 < len(self.audio) else 0.0
        return _Segment(track_id, frame, self.engine.stream(FILE_HOP_FRAMES, previous), frame)

    def _samples(self, lo_frame: int, hi_frame: int, tail: int = 0) -> np.ndarray:
        lo, hi = lo_frame * SAMPLES_PER_FRAME, hi_frame * SAMPLES_PER_FRAME + tail
        out = self.audio[lo:hi]
        return np.pad(out, (0, (hi - lo) - len(out)))  # a short soundtrack ends in silence

    def add(self, result: CropResult) -> None:
        seg = self.open.get(result.track_id)
        if seg is not None and result.frame_index > seg.next_frame and seg.next_frame not in seg.pending:
            # a gap, unless an out-of-order frame fills it later: frames arrive in order per track, so a jump
            # means the track lost its face for a while
            self._close(seg)
            seg = None
        if seg is None:
            seg = self.open[result.track_id] = self._start(result.track_id, result.frame_index)
        seg.pending[result.frame_index] = (result.crops[self.crop], result.box)
        while seg.next_frame in seg.pending:
            crops, box = seg.pending.pop(seg.next_frame)
            seg.stream.push(audio=self._samples(seg.next_frame, seg.next_frame + 1), crops=crops)
            seg.motion.append(_mouth_motion(seg.last_crop, crops))
            seg.centres.append((box.cx, box.y + box.h / 2.0, box.w))
            seg.last_crop = crops
            seg.next_frame += 1

    def _close(self, seg: _Segment) -> None:
        del self.open[seg.track_id]
        if seg.frames < self.min_frames:
            return
        # the MFCC of the last frame reads 240 samples past it (real audio where it exists, as offline)
        seg.stream.push(audio=self._samples(seg.next_frame, seg.next_frame, TAIL))
        seg.stream.flush()
        cues = {"mouth_motion": np.asarray(seg.motion, np.float32), "box": np.asarray(seg.centres, np.float32)}
        self.closed.append((seg.track_id, seg.start, seg.stream.result(), cues))

    def finish(self) -> list[tuple[int, int, Any, dict[str, np.ndarray]]]:
        for seg in list(self.open.values()):
            self._close(seg)
        return sorted(self.closed, key=lambda c: (c[0], c[1]))


def _mouth_motion(previous: np.ndarray | None, crop: np.ndarray) -> float:
    """How much the mouth crop changed since the last frame (mean |difference| of a 28x28 grey thumbnail):
    the visible-speech cue the use cases weigh against the sync evidence (a frozen mouth scores ~0)."""
    if previous is None:
        return 0.0
    step = max(1, crop.shape[0] // 28)
    return float(np.abs(crop[::step, ::step].astype(np.int16) - previous[::step, ::step]).mean())


def audio_level(audio: np.ndarray, frames: int) -> np.ndarray:
    """Per video frame: loudness in dBFS (RMS of the frame's 640 samples, silence floored at -100 dB)."""
    audio = np.pad(audio[:frames * SAMPLES_PER_FRAME], (0, max(0, frames * SAMPLES_PER_FRAME - len(audio))))
    rms = np.sqrt((audio.reshape(frames, SAMPLES_PER_FRAME).astype(np.float64) ** 2).mean(axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32)


def sync_file(engine: Any, path: str | Path, detect_every: int = 5, detector: str = DEFAULT_DETECTOR,
              min_frames: int = 5) -> Any:
    """The whole pipeline on a file with memory bounded by the stream windows; returns a FileSync."""
    from edge_sync.runtimes.api import FileSync, TrackSync

    start = time.perf_counter()
    info = probe_for_sync(path)
    crop = CROP_FOR_PREPROCESSING[engine.contract.video.name]
    audio = read_audio(path)
    # iter_frames hands out a fresh array per frame and nothing here edits one: the tracker need not copy them
    tracker = FaceTracker(detector, detect_every=detect_every, crops=(crop,), copy_frames=False)
    syncer = FileSyncer(engine, audio, crop, min_frames)
    for frame in iter_frames(path):
        for result in tracker.push(frame):
            syncer.add(result)
    for result in tracker.finish():
        syncer.add(result)
    segments = syncer.finish()
    if not segments:
        raise NoFaceError(f"{path}: no face track of {min_frames}+ consecutive frames was found ({tracker.num_frames} "
                          "frames); check that a frontal, upright, well-lit face is visible")
    covered = len(audio) / SAMPLES_PER_FRAME  # video frames the decoded soundtrack reaches; past it: silence
    for _, first, res, _ in segments:
        if res.speech is not None:
            res.speech = res.speech.with_coverage(covered - first)
    tracks = [TrackSync(tid, s, res, cues) for tid, s, res, cues in segments]
    sync = FileSync(str(path), tracker.num_frames, tracks, tracker.frames_without_face().tolist(),
                    time.perf_counter() - start, audio_level(audio, tracker.num_frames), info.width or 0,
                    info.height or 0, audio_frames=covered)
    for warning in sync.warnings:  # the padding is news about the file; speech presence is in the result too
        (log.warning if "soundtrack" in warning else log.info)("%s: %s", path, warning)
    return sync
