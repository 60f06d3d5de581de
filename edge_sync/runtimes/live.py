"""``LiveSyncer``: a camera and a microphone -> per-frame sync results, following one face.

What a device app needs around :class:`~edge_sync.runtimes.streaming.SyncStream`, in one place:

* **one face at a time**: the face being followed keeps the stream; another face takes over only once ours has
  been gone for ``switch_after`` frames (the tracker keeps a track that long), so two people in view do not
  interleave in one stream;
* **segments as ``sync_file`` cuts them**: a gap in our track closes the segment (a model window must see
  consecutive frames); segments shorter than ``min_frames`` give no result;
* **frames wait for their sound**: a microphone often lags the camera, and a frame pushed before its 640
  samples arrived would be scored against silence; crops wait (in order, also when the tracker hands them back
  out of order) until their audio is there;
* **bounded audio**: samples no frame can still need are dropped, keeping the one sample the next segment's
  MFCC pre-emphasis continues from, so a segment's results equal the offline pipeline's.

numpy only. Feed it the face tracker's :class:`~edge_sync.features.faces.CropResult`s and the microphone's
16 kHz samples in any interleaving; see ``examples/jetson/camera_loop.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from edge_sync.errors import EdgeSyncError
from edge_sync.features.mfcc import float_samples
from edge_sync.runtimes.evidence import evidence_ratio, null_rolls, short_soundtrack, unsure_reason
from edge_sync.runtimes.streaming import TAIL, FrameSync
from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME
from edge_sync.usecases.heads import evidence_floor_of

__all__ = ["LiveFrame", "LiveSegment", "LiveSyncer", "MicrophoneLagError"]


class MicrophoneLagError(EdgeSyncError):
    """The camera ran further ahead of the microphone than ``max_audio_lag`` frames: no sound is arriving."""


@dataclass(frozen=True)
class LiveFrame:
    """One final per-frame result: ``frame`` counts camera frames from the start; ``offset_frames`` > 0: sound late."""

    frame: int
    track_id: int
    segment_start: int  # first frame of the segment it belongs to (a new segment starts after a gap)
    offset_frames: int
    confidence: float
    probs: np.ndarray  # [2K+1]


@dataclass(frozen=True)
class LiveSegment:
    """A closed segment: one uninterrupted run of the followed face, and its clip-level result, with the evidence
    null ``sync_file`` measures (read off the artifact's embeddings: no more model calls; none where the artifact
    does not output them). As for a file's soundtrack, a segment of 38-75 frames draws its rolls nearer, and one under
    38 frames (1.52 s) has none and is unsure whatever its confidence (:mod:`edge_sync.runtimes.evidence`)."""

    track_id: int
    start: int
    result: Any  # SyncResult
    null_confidences: list[float] = field(default_factory=list)
    evidence_floor: float | None = None  # fitted beside the model's use-case heads (None: none fitted)
    null_too_short: bool = False  # the embeddings are there, but the segment is too short for any null

    @property
    def evidence_ratio(self) -> float | None:
        """The segment's confidence over its null's (None: no null measured)."""
        return evidence_ratio(self.result.confidence, self.null_confidences)

    @property
    def unsure_reason(self) -> str | None:
        """Why the segment's offset cannot be trusted (the rule ``sync`` applies: under the evidence floor, or
        under 1.5x the null), or None when its evidence stands or it has no speech (that has its own flag)."""
        if self.result.no_speech:
            return None
        return unsure_reason(self.result.confidence, self.evidence_floor, self.null_confidences, self.null_too_short)


@dataclass
class _Open:
    track_id: int
    start: int
    next_frame: int
    stream: Any = None
    pending: dict[int, np.ndarray] = field(default_factory=dict)

    def last_seen(self) -> int:
        return max([self.next_frame - 1, *self.pending])


class LiveSyncer:
    """Routes face-tracker results and microphone samples into per-segment sync streams; see the module docstring."""

    def __init__(self, engine: Any, crop: str | None = None, hop_frames: int = 25, switch_after: int = 25,
                 min_frames: int = 5, max_audio_lag: int = 200, keep_frames: int | None = None) -> None:
        """``crop``: the crop kind the engine takes (default: its contract's); ``switch_after``: frames our face
        must be gone before another is followed (the tracker's ``max_gap``); ``max_audio_lag``: frames the camera
        may run ahead of the microphone before :class:`MicrophoneLagError`, and the sound kept while no face is
        followed (the tracker confirms a face a few frames late); ``keep_frames``: each segment's stream
        summarises only its latest frames (an always-on camera; see :class:`SyncStream`)."""
        from edge_sync.features.clip import CROP_FOR_PREPROCESSING

        self.engine, self.hop, self.min_frames = engine, hop_frames, min_frames
        self.crop = crop or CROP_FOR_PREPROCESSING[engine.contract.video.name]
        self.switch_after, self.max_audio_lag, self.keep_frames = switch_after, max_audio_lag, keep_frames
        self.segments: list[LiveSegment] = []
        self.evidence_floor = evidence_floor_of(engine)
        self._open: _Open | None = None
        self._audio = np.zeros(0, np.float64)  # samples from absolute index self._audio_start
        self._audio_start = 0
        self._previous: float | None = None  # the sample before self._audio_start
        self._finished = False

    # --- input -----------------------------------------------------------------------------------------
    @property
    def audio_end(self) -> int:
        """Samples received so far (the microphone's clock, in samples at 16 kHz)."""
        return self._audio_start + len(self._audio)

    def push_audio(self, samples: np.ndarray) -> list[LiveFrame]:
        """Microphone samples, mono 16 kHz (float in [-1, 1] or int16), in order; returns frames now final."""
        self._check_open()
        a = np.asarray(samples)
        if a.ndim != 1:
            raise ValueError(f"push mono samples [n] at {AUDIO_RATE} Hz, got shape {a.shape}")
        self._audio = np.concatenate([self._audio, float_samples(a, "push_audio")])
        if self._open is None:  # no face yet: keep only what a face confirmed late could still need
            self._forget_before(self.audio_end - self.max_audio_lag * SAMPLES_PER_FRAME)
        return self._drain()

    def push_faces(self, results: Iterable[Any]) -> list[LiveFrame]:
        """The face tracker's CropResults (any order within a track); returns frames now final."""
        self._check_open()
        out: list[LiveFrame] = []
        for r in results:
            seg = self._open
            if seg is not None and r.track_id != seg.track_id:
                if r.frame_index - seg.last_seen() <= self.switch_after:
                    continue  # someone else while our face may still come back: keep following ours
                out += self._close()
                seg = None
            elif seg is not None and r.frame_index > seg.next_frame and seg.next_frame not in seg.pending:
                out += self._close()  # our face was gone for a while: a new segment, as sync_file cuts them
                seg = None
            if seg is None:
                seg = self._open = _Open(r.track_id, r.frame_index, r.frame_index)
            if r.frame_index >= seg.next_frame:
                seg.pending[r.frame_index] = r.crops[self.crop]
        return out + self._drain()

    def finish(self) -> list[LiveFrame]:
        """End of input: score the open segment's last frames (missing sound is silence, as offline)."""
        if self._finished:
            return []
        out = self._drain(final=True) + self._close()
        self._finished = True
        return out

    def current(self) -> LiveSegment | None:
        """The open segment so far: its result over the frames emitted yet (the latest ``keep_frames`` of them)
        with its evidence null, what an always-on app polls to know whether the live offset can be trusted; None
        while no face is followed or before its first frame's result."""
        seg = self._open
        if seg is None or seg.stream is None or not seg.stream.emitted_frames:
            return None
        return self._summary(seg)

    def result(self) -> LiveSegment:
        """The longest closed segment: the clip-level answer, as ``FileSync.main`` picks it."""
        if not self.segments:
            raise EdgeSyncError(f"no face segment of {self.min_frames}+ consecutive frames has closed yet; check "
                                "that a frontal, upright, well-lit face is visible")
        return max(self.segments, key=lambda s: s.result.frames)

    # --- routing -----------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._finished:
            raise EdgeSyncError("this LiveSyncer has finished; make a new one")

    def _drain(self, final: bool = False) -> list[LiveFrame]:
        """Push the waiting crops, in frame order, whose sound has arrived (all of them when ``final``)."""
        seg, out = self._open, []
        while seg is not None and seg.next_frame in seg.pending:
            f = seg.next_frame
            if not final and self.audio_end < (f + 1) * SAMPLES_PER_FRAME:
                lag = seg.last_seen() - self.audio_end // SAMPLES_PER_FRAME  # the newest frame waiting
                if lag > self.max_audio_lag:
                    raise MicrophoneLagError(f"the camera is {lag} frames ahead of the microphone; check that it "
                                             "records (and its sample rate: 16 kHz mono expected)")
                break
            if seg.stream is None:
                start = seg.start * SAMPLES_PER_FRAME  # continue the soundtrack's pre-emphasis
                seg.stream = self.engine.stream(self.hop, None if start == 0 else self._sample(start - 1),
                                                keep_frames=self.keep_frames,
                                                keep_embeddings=getattr(self.engine, "embeddings", False))
            emitted = seg.stream.push(audio=self._samples(f * SAMPLES_PER_FRAME, (f + 1) * SAMPLES_PER_FRAME),
                                      crops=seg.pending.pop(f))
            seg.next_frame += 1
            out += self._frames(seg, emitted)
            self._forget_before(seg.next_frame * SAMPLES_PER_FRAME)
        return out

    def _close(self) -> list[LiveFrame]:
        seg, self._open = self._open, None
        if seg is None or seg.stream is None or seg.next_frame - seg.start < self.min_frames:
            return []
        end = seg.next_frame * SAMPLES_PER_FRAME  # the last frame's MFCC reads 240 samples past it
        out = self._frames(seg, seg.stream.push(audio=self._samples(end, end + TAIL)))
        out += self._frames(seg, seg.stream.flush())
        self.segments.append(self._summary(seg))
        return out

    def _summary(self, seg: _Open) -> LiveSegment:
        """The segment's result so far and its null, read off the embeddings of the frames the result summarises."""
        result, max_offset = seg.stream.result(), self.engine.contract.max_offset
        short = short_soundtrack(result.frames, max_offset)  # the frames the result summarises
        too_short = bool(getattr(self.engine, "embeddings", False)) and not null_rolls(result.frames, max_offset, short)
        return LiveSegment(seg.track_id, seg.start, result, seg.stream.null_confidences(short=short, reading=result.offset_frames),
                           self.evidence_floor, too_short)

    def _frames(self, seg: _Open, emitted: list[FrameSync]) -> list[LiveFrame]:
        return [LiveFrame(seg.start + f.frame, seg.track_id, seg.start, f.offset_frames, f.confidence, f.probs)
                for f in emitted]

    # --- audio by absolute sample index ----------------------------------------------------------------------
    def _samples(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi); zeros where none arrived (a soundtrack shorter than the video ends in silence)."""
        out = self._audio[max(lo - self._audio_start, 0):max(hi - self._audio_start, 0)]
        return np.pad(out, (0, (hi - lo) - len(out)))

    def _sample(self, i: int) -> float:
        j = i - self._audio_start
        if j < 0:
            return self._previous if self._previous is not None else 0.0
        return float(self._audio[j]) if j < len(self._audio) else 0.0

    def _forget_before(self, sample: int) -> None:
        """Drop samples before ``sample`` (the next frame's first), keeping the previous one for pre-emphasis."""
        cut = min(sample, self.audio_end) - self._audio_start
        if cut > 0:
            self._previous = float(self._audio[cut - 1])
            self._audio = self._audio[cut:]
            self._audio_start += cut
