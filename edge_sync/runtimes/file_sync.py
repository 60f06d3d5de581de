"""``Engine.sync_file``: decode -> face tracker -> one sync stream per uninterrupted face-track segment.

The video is decoded once and crops flow straight into :class:`SyncStream`s, which keep only the frames a later
window needs, so memory does not grow with the clip's length (no clip-long crop or frame arrays). Segments are
cut where a track has a gap and dropped below ``min_frames``, exactly as :func:`edge_sync.features.clip.prepare_clip`
cuts them, and each stream starts with the whole soundtrack's pre-emphasis state, so results equal running the
prepared clip's segments through :meth:`Engine.run_segment`. numpy (+ PyAV and OpenCV for media and faces) only.

Each segment's :class:`~edge_sync.runtimes.api.TrackSync` also carries per-frame ``cues`` for the use cases:
``mouth_motion`` (crop change), ``box`` (smoothed centre and width), ``detected`` (the detector measured the face
on that frame rather than the tracker interpolating it) and, from the detector's own box on those frames (NaN on
the others), ``landmarks``, ``mouth_width``, ``yaw`` and ``face_size``
(:func:`~edge_sync.features.faces.landmark_cues` says what each is).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_sync.errors import NoFaceError
from edge_sync.features.clip import CROP_FOR_PREPROCESSING, probe_for_sync
from edge_sync.features.faces import DEFAULT_DETECTOR, CropResult, FaceBox, FaceTracker, landmark_cues
from edge_sync.features.media import iter_frames, read_audio
from edge_sync.runtimes.evidence import null_rolls, rolled_window, short_soundtrack
from edge_sync.spec import FRAME_MS, SAMPLES_PER_FRAME
from edge_sync.usecases.heads import evidence_floor_of

log = logging.getLogger(__name__)
# frames emitted per model call (each call also reads 48 frames of context each side): memory per call grows ~0.4 MB a
# frame, compute shrinks with longer hops; 45 keeps the stream thread's peak within the 200 MB budget
FILE_HOP_FRAMES = 45
# the streamed evidence null's three streams per segment (artifacts without embedding outputs, and segments under
# 76 frames): only their confidence is read, never a frame early, so they take longer hops and re-read less
# context. Warm sync of a 20 s clip on a 2-core CPU (docs/runtime.md): 3.17 s at 45, 2.55 s at 100 (no null:
# 1.52 s), peak RSS 200 -> 223 MB; 150 and 250 were no faster and cost up to 70 MB more
NULL_HOP_FRAMES = 100
TAIL = 240  # samples after a segment's last frame that its last MFCC window reads
# frames of sound pushed to a stream at once (crops go one by one; the MFCC is exact whatever the chunks): 8 frames a
# call took a quarter off the stream's own time. Not more: from ~40 MFCC steps a call (> 262,144 multiply-adds) the
# filterbank product runs on OpenBLAS's threads, which then spin and made the next model call 2x slower on 2 cores.
AUDIO_BATCH_FRAMES = 8
DECODE_THREADS = 1  # the stream thread keeps the second core busy; more decoder threads only cost memory


@dataclass
class _Segment:
    """One uninterrupted run of a track being streamed."""

    track_id: int
    start: int
    stream: Any
    nulls: dict[int, Any]  # roll (frames) -> a stream of the same crops against the soundtrack rolled by it
    next_frame: int
    audio_to: int  # the stream has the sound of frames before this one (it lags next_frame by < a batch)
    # out-of-order frames waiting for their turn: crop, smoothed box, the detector's box (None: interpolated)
    pending: dict[int, tuple[np.ndarray, FaceBox, FaceBox | None]] = field(default_factory=dict)
    motion: list[float] = field(default_factory=list)  # per frame: mean |change| of the mouth crop, 0..255
    centres: list[tuple[float, float, float]] = field(default_factory=list)  # per frame: box cx, cy, width
    detections: list[FaceBox | None] = field(default_factory=list)  # per frame: the detector's box, or None
    last_crop: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return self.next_frame - self.start


class FileSyncer:
    """Routes tracker results to per-segment streams; see the module docstring."""

    def __init__(self, engine: Any, audio: np.ndarray, crop: str, min_frames: int, null_check: bool = True) -> None:
        self.engine, self.audio, self.crop, self.min_frames = engine, audio, crop, min_frames
        self.open: dict[int, _Segment] = {}
        # (track, start, SyncResult, cues, null confidences)
        self.closed: list[tuple[int, int, Any, dict[str, np.ndarray], list[float]]] = []
        # the evidence null (edge_sync.runtimes.evidence): every segment also runs against the soundtrack rolled ...
        self.max_offset = engine.contract.max_offset
        soundtrack = len(audio) // SAMPLES_PER_FRAME
        # a soundtrack under 3.04 s draws its rolls nearer; under 1.52 s it has none and every reading is unsure
        self.short = short_soundtrack(soundtrack, self.max_offset)
        self.rolls = null_rolls(soundtrack, self.max_offset, self.short) if null_check else []
        self.too_short = null_check and not self.rolls
        # ... unless the artifact outputs its embeddings: then a segment long enough for a null of its own reads it
        # off them (the null streams are dropped before their first model call), a shorter one streams it still
        self.embedding_null = bool(self.rolls) and bool(getattr(engine, "embeddings", False))

    def _start(self, track_id: int, frame: int) -> _Segment:
        first = frame * SAMPLES_PER_FRAME

        def previous(roll: int) -> float | None:  # continue the whole soundtrack's pre-emphasis, as offline MFCC does
            if first == 0 and roll == 0:
                return None
            return float(self._samples(frame, frame, roll=roll, before=1)[0])

        nulls = {r: self.engine.stream(NULL_HOP_FRAMES, previous(r)) for r in self.rolls}
        main = self.engine.stream(FILE_HOP_FRAMES, previous(0), keep_embeddings=self.embedding_null)
        return _Segment(track_id, frame, main, nulls, frame, frame)

    def _samples(self, lo_frame: int, hi_frame: int, tail: int = 0, roll: int = 0, before: int = 0) -> np.ndarray:
        """The sound of frames lo..hi (+ ``tail`` samples after, ``before`` samples before); ``roll`` > 0: of the
        soundtrack rolled by that many frames (frame t hears frame t + roll, wrapping round the soundtrack's end)."""
        lo, hi = lo_frame * SAMPLES_PER_FRAME - before, hi_frame * SAMPLES_PER_FRAME + tail
        if roll:
            return rolled_window(self.audio, lo + roll * SAMPLES_PER_FRAME, hi - lo)
        out = self.audio[max(0, lo):hi]
        return np.pad(out, (max(0, -lo), (hi - lo) - len(out) - max(0, -lo)))  # a short soundtrack ends in silence

    def add(self, result: CropResult) -> None:
        seg = self.open.get(result.track_id)
        if seg is not None and result.frame_index > seg.next_frame and seg.next_frame not in seg.pending:
            # a gap, unless an out-of-order frame fills it later: frames arrive in order per track, so a jump
            # means the track lost its face for a while
            self._close(seg)
            seg = None
        if seg is None:
            seg = self.open[result.track_id] = self._start(result.track_id, result.frame_index)
        seg.pending[result.frame_index] = (result.crops[self.crop], result.box, result.detection)
        while seg.next_frame in seg.pending:
            crops, box, detection = seg.pending.pop(seg.next_frame)
            seg.stream.push(crops=crops)
            for null in seg.nulls.values():
                null.push(crops=crops)
            seg.motion.append(_mouth_motion(seg.last_crop, crops))
            seg.centres.append((box.cx, box.y + box.h / 2.0, box.w))
            seg.detections.append(detection)
            seg.last_crop = crops
            seg.next_frame += 1
        if self.embedding_null and seg.nulls and null_rolls(seg.frames, self.max_offset, self.short):
            seg.nulls = {}  # long enough for its own embedding null (76 frames, 38 in a short soundtrack; before a
            # null stream's first call)
        if seg.next_frame - seg.audio_to >= AUDIO_BATCH_FRAMES:
            seg.stream.push(audio=self._samples(seg.audio_to, seg.next_frame))
            for roll, null in seg.nulls.items():
                null.push(audio=self._samples(seg.audio_to, seg.next_frame, roll=roll))
            seg.audio_to = seg.next_frame

    def _close(self, seg: _Segment) -> None:
        del self.open[seg.track_id]
        if seg.frames < self.min_frames:
            return
        # the MFCC of the last frame reads 240 samples past it (real audio where it exists, as offline)
        seg.stream.push(audio=self._samples(seg.audio_to, seg.next_frame, TAIL))
        seg.stream.flush()
        nulls = []
        for roll, null in seg.nulls.items():
            null.push(audio=self._samples(seg.audio_to, seg.next_frame, TAIL, roll=roll))
            null.flush()
            nulls.append(float(null.result().confidence))
        result = seg.stream.result()
        if self.embedding_null and not seg.nulls:
            nulls = seg.stream.null_confidences(short=self.short, reading=result.offset_frames)
        cues = {"mouth_motion": np.asarray(seg.motion, np.float32), "box": np.asarray(seg.centres, np.float32),
                "detected": np.array([d is not None for d in seg.detections]), **landmark_cues(seg.detections)}
        self.closed.append((seg.track_id, seg.start, result, cues, nulls))

    def finish(self) -> list[tuple[int, int, Any, dict[str, np.ndarray], list[float]]]:
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


class _Background:
    """Runs ``handle`` on each submitted item, in order, in one worker thread.

    ``sync_file`` decodes and tracks faces in the calling thread while this thread streams the crops through the
    model. Decoding, colour conversion, face detection and onnxruntime all release the GIL, but their own threads
    made a 2-core sync only ~1.2x faster than one thread, so the two halves overlap instead (5.6 -> 4.8 s on the
    65 s benchmark clip). The queue holds at most ``depth`` items (tracker batches of a few crops): the tracker
    runs that far ahead, holding its frames while the model runs, so a deeper queue costs peak memory (~1 MB an
    item) for little speed. An error in the worker is raised by the next :meth:`submit` and by :meth:`close`.
    """

    _STOP = object()

    def __init__(self, handle: Callable[[Any], None], depth: int = 4, name: str = "edge-sync-stream") -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._loop, args=(handle,), name=name, daemon=True)
        self._thread.start()

    def _loop(self, handle: Callable[[Any], None]) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is None and not self._cancelled:  # after an error, drain so submit never blocks
                try:
                    handle(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                    self._error = exc

    def submit(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        """Wait for every submitted item; raise the worker's error, if any."""
        self._queue.put(self._STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Drop what is queued and stop (the submitting side failed)."""
        self._cancelled = True
        self._queue.put(self._STOP)
        self._thread.join()


def audio_level(audio: np.ndarray, frames: int) -> np.ndarray:
    """Per video frame: loudness in dBFS (RMS of the frame's 640 samples, silence floored at -100 dB)."""
    audio = np.pad(audio[:frames * SAMPLES_PER_FRAME], (0, max(0, frames * SAMPLES_PER_FRAME - len(audio))))
    rms = np.sqrt((audio.reshape(frames, SAMPLES_PER_FRAME).astype(np.float64) ** 2).mean(axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32)


def sync_file(engine: Any, path: str | Path, detect_every: int = 5, detector: str = DEFAULT_DETECTOR,
              min_frames: int = 5, null_check: bool = True) -> Any:
    """The whole pipeline on a file with memory bounded by the stream windows; returns a FileSync.
    ``null_check``: also score each segment against its sound rolled out of any alignment
    (:mod:`edge_sync.runtimes.evidence`): read off the segment's embeddings where the artifact outputs them and the
    segment is 76+ frames long (38+ in a soundtrack under 3.04 s, whose rolls are drawn nearer), else streamed (the
    model runs 4x, the decoding and faces once); a soundtrack under 1.52 s has none and its reading is unsure."""
    from edge_sync.runtimes.api import UNSURE_PREFIX, FileSync, TrackSync

    start = time.perf_counter()
    info = probe_for_sync(path)
    crop = CROP_FOR_PREPROCESSING[engine.contract.video.name]
    audio = read_audio(path)
    # iter_frames hands out a fresh array per frame and nothing here edits one: the tracker need not copy them
    tracker = FaceTracker(detector, detect_every=detect_every, crops=(crop,), copy_frames=False)
    syncer = FileSyncer(engine, audio, crop, min_frames, null_check)
    worker = _Background(lambda results: [syncer.add(r) for r in results])
    try:
        for frame in iter_frames(path, threads=DECODE_THREADS):
            results = tracker.push(frame)
            if results:
                worker.submit(results)
        worker.submit(tracker.finish())
    except BaseException:
        worker.cancel()
        raise
    worker.close()
    segments = syncer.finish()
    if not segments:
        shortest = max(min_frames, tracker.min_track)  # a track of fewer boxed frames is taken for a false positive
        if tracker.num_frames < shortest:
            raise NoFaceError(f"{path}: the clip is too short: {tracker.num_frames} frames, and a face must be tracked "
                              f"for {shortest} ({shortest * FRAME_MS / 1000:g} s) before it counts as one")
        raise NoFaceError(f"{path}: no face track of {min_frames}+ consecutive frames was found ({tracker.num_frames} "
                          "frames); check that a frontal, upright, well-lit face is visible")
    covered = len(audio) / SAMPLES_PER_FRAME  # video frames the decoded soundtrack reaches; past it: silence
    for _, first, res, _, _ in segments:
        if res.speech is not None:
            res.speech = res.speech.with_coverage(covered - first)
    tracks = [TrackSync(tid, s, res, cues, nulls, null_too_short=syncer.too_short)
              for tid, s, res, cues, nulls in segments]
    sync = FileSync(str(path), tracker.num_frames, tracks, tracker.frames_without_face().tolist(),
                    time.perf_counter() - start, audio_level(audio, tracker.num_frames), info.width or 0,
                    info.height or 0, audio_frames=covered, evidence_floor=evidence_floor_of(engine))
    news = sync.file_news
    for warning in sync.warnings:  # the padding is news about the file; speech presence is in the result too
        (log.warning if warning in news or warning.startswith(UNSURE_PREFIX) else log.info)("%s: %s", path, warning)
    return sync
