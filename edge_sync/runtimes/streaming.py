"""``Engine.stream()``: push microphone samples and mouth crops as they arrive, get per-frame results.

A frame's result depends on ``context`` frames each side (the receptive field), so the stream runs the model on
a window once the frames after it have arrived, keeps the window's centre and drops what no later window needs:
memory stays bounded, latency is at most ``hop + context`` frames, and the results equal an offline
``Engine.run`` over the same data (MFCC is computed incrementally with the exact pre-emphasis and framing of the
whole signal). numpy only.

Each side is bounded on its own too: when one input stops (a muted microphone, a lost face) the other may run
ahead by at most ``max_lead_frames`` (default :data:`MAX_LEAD_FRAMES`, 30 s: ~4 MB of audio or ~28 MB of crops); a
push past that is refused with an error and leaves the stream as it was, so the app can catch up or start anew.
For :meth:`SyncStream.result` the stream also keeps every emitted frame's distributions and MFCC steps (about 350
bytes a frame, 32 MB an hour; with ``keep_embeddings`` also the frame's embeddings, 256 bytes for the student);
an always-on camera passes ``keep_frames`` to keep only the most recent ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sync.errors import EdgeSyncError
from edge_sync.features.mfcc import INT16_SCALE, float_samples, mfcc
from edge_sync.features.speech import speech_presence
from edge_sync.runtimes.evidence import embedding_nulls
from edge_sync.runtimes.result import SyncResult
from edge_sync.spec import AUDIO_RATE, EMBEDDING_NAMES, MFCC_PER_FRAME, SAMPLES_PER_FRAME, offset_values

STEP = SAMPLES_PER_FRAME // MFCC_PER_FRAME  # 160 samples per MFCC step
TAIL = 240  # samples after a frame that its last MFCC window reads (25 ms window, 10 ms hop)
MAX_LEAD_FRAMES = 750  # 30 s: how far one input may run ahead of the other before a push is refused
# what a stream holds of each kept frame, (time steps per frame, dtype): the result's outputs, the MFCC (at the
# float16 precision the speech measure reads) and the embeddings
_HELD = {"sync_probs": (1, np.float32), "correlation": (1, np.float32), "mfcc": (MFCC_PER_FRAME, np.float16),
         **{name: (1, np.float16) for name in EMBEDDING_NAMES}}


class _Samples:
    """A growable float64 sample buffer: appends are amortised O(n) (a camera app pushes 640 samples per frame,
    and re-concatenating the whole buffer each time cost ~5% of a file sync), dropping the front is one move."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._buf = np.zeros(capacity, np.float64)
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def data(self) -> np.ndarray:
        """The held samples (a view: valid until the next append or drop)."""
        return self._buf[:self._len]

    def append(self, samples: np.ndarray) -> None:
        need = self._len + len(samples)
        if need > len(self._buf):
            grown = np.zeros(max(need, 2 * len(self._buf)), np.float64)
            grown[:self._len] = self._buf[:self._len]
            self._buf = grown
        self._buf[self._len:need] = samples
        self._len = need

    def drop_front(self, count: int) -> None:
        keep = self._len - count
        self._buf[:keep] = self._buf[count:self._len]
        self._len = keep


@dataclass(frozen=True)
class FrameSync:
    """One frame's result as the stream emits it (offset k > 0: the sound is late)."""

    frame: int
    offset_frames: int
    confidence: float  # probability of that offset
    probs: np.ndarray  # [2K+1]
    correlation: np.ndarray  # [2K+1]


class SyncStream:
    """Incremental sync over a live audio + mouth-crop stream; see the module docstring."""

    def __init__(self, engine: Any, hop_frames: int = 25, previous_sample: float | None = None,
                 keep_frames: int | None = None, max_lead_frames: int = MAX_LEAD_FRAMES,
                 keep_embeddings: bool = False) -> None:
        """``previous_sample``: the sample just before the first pushed one when the stream starts inside a longer
        recording (float in [-1, 1]), so the MFCC's pre-emphasis continues it exactly. ``keep_frames``: how many of
        the latest frames :meth:`result` summarises (None: every frame since the start). ``keep_embeddings``: also
        hold the kept frames' embeddings for :meth:`embeddings` (where the artifact outputs them; 4 bytes a
        dimension a frame, 23 MB an hour for the student's D = 64)."""
        if keep_frames is not None and (isinstance(keep_frames, bool) or int(keep_frames) != keep_frames
                                        or keep_frames < 1):
            raise ValueError(f"keep_frames must be a positive number of frames or None, got {keep_frames!r}")
        if previous_sample is not None:
            numeric = (int, float, np.floating, np.integer)
            if isinstance(previous_sample, bool) or not isinstance(previous_sample, numeric):
                raise TypeError(f"previous_sample must be a number (the sample before the first pushed one) or None, "
                                f"got {type(previous_sample).__name__} {previous_sample!r}")
            if not -1.0 <= float(previous_sample) <= 1.0:  # NaN fails this too
                raise ValueError(f"previous_sample must be a float sample in [-1, 1], got {previous_sample!r}")
            previous_sample = float(previous_sample)
        if isinstance(max_lead_frames, bool) or int(max_lead_frames) != max_lead_frames or max_lead_frames < 1:
            raise ValueError(f"max_lead_frames must be a positive number of frames, got {max_lead_frames!r}")
        self.max_lead_frames = int(max_lead_frames)
        if engine.contract.audio_input != "mfcc":
            raise EdgeSyncError(f"streaming computes MFCC audio features; this artifact takes "
                                f"{engine.contract.audio_input}")
        self.engine = engine
        self.context = engine.context_frames
        self.size = engine.contract.video.size
        self.buckets = engine.buckets
        self.hop = max(self.buckets) - 2 * self.context if self.buckets else hop_frames
        self.window = max(self.buckets) if self.buckets else hop_frames + 2 * self.context
        if self.window - 2 * self.context < 1:
            raise EdgeSyncError(f"the artifact's longest bucket ({self.window} frames) is too short to stream with "
                                f"{self.context} frames of context each side")
        self._samples = _Samples()  # samples from absolute index self._audio_start
        self._audio_start = 0
        self._prev_sample = previous_sample  # the sample before self._audio_start
        self._mfcc = np.zeros((13, 0), np.float32)  # steps from absolute step self._mfcc_start
        self._mfcc_start = 0
        self._crops: list[np.ndarray] = []  # frames from absolute frame self._crop_start
        self._crop_start = 0
        self._frames_in = 0
        self._next_emit = 0
        # the kept frames' results, oldest first, in chunks [C, n * steps]: sync_probs, correlation, the MFCC steps
        # (float16, for the result's speech presence) and, with keep_embeddings, the embeddings (float16)
        self._held: dict[str, list[np.ndarray]] = {name: [] for name in _HELD}
        self._kept = 0  # frames held
        self.keep_embeddings = bool(keep_embeddings) and bool(getattr(engine, "embeddings", False))
        self.keep_frames = None if keep_frames is None else int(keep_frames)
        self._closed = False

    @property
    def emitted_frames(self) -> int:
        """Frames whose results are final so far (those :meth:`result` can summarise)."""
        return self._next_emit

    @property
    def latency_frames(self) -> int:
        """Most frames a result can wait for: the frames after it that its window must see (a static-shape
        artifact's first window needs a whole bucket)."""
        return self.window if self.buckets else self.hop + self.context

    # --- input -----------------------------------------------------------------------------------------
    def push(self, audio: np.ndarray | None = None, crops: np.ndarray | None = None) -> list[FrameSync]:
        """Add 16 kHz mono samples (float in [-1, 1] or int16) and/or uint8 RGB crops [n, S, S, 3]; return the
        frames whose results are now final."""
        if self._closed:
            raise EdgeSyncError("this stream was flushed; start a new one with engine.stream()")
        if audio is not None:
            self._push_audio(audio)
        if crops is not None:
            self._push_crops(crops)
        return self._emit(final=False)

    def _push_audio(self, audio: np.ndarray) -> None:
        a = np.asarray(audio)
        if a.ndim != 1:
            raise ValueError(f"push mono samples [n] at {AUDIO_RATE} Hz, got shape {a.shape}")
        if np.issubdtype(a.dtype, np.integer) and a.dtype != np.int16:
            raise TypeError(f"integer audio must be int16, got {a.dtype}")
        samples = float_samples(a, "push")
        audio_frames = (self._audio_start + len(self._samples) + len(samples)) // SAMPLES_PER_FRAME
        self._check_lead("audio", audio_frames - self._frames_in, "crops")
        self._samples.append(samples)
        self._compute_mfcc(final=False)

    def _push_crops(self, crops: np.ndarray) -> None:
        c = np.asarray(crops)
        if c.ndim == 3:
            c = c[None]
        if c.dtype != np.uint8 or c.ndim != 4 or c.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"crops must be uint8 [n, {self.size}, {self.size}, 3] RGB, got {c.dtype} {c.shape}")
        audio_frames = (self._audio_start + len(self._samples)) // SAMPLES_PER_FRAME
        self._check_lead("crops", self._frames_in + len(c) - audio_frames, "audio")
        self._crops.extend(c)
        self._frames_in += len(c)

    def _check_lead(self, side: str, lead: int, other: str) -> None:
        """Refuse a push that would put ``side`` more than max_lead_frames ahead (nothing is kept from it)."""
        if lead > self.max_lead_frames:
            raise EdgeSyncError(f"the {side} would run {lead} frames ({lead / 25:.1f} s) ahead of the {other}, more "
                                f"than max_lead_frames={self.max_lead_frames}; push the {other} (or start a new "
                                f"stream): this push was not kept")

    def _compute_mfcc(self, final: bool) -> None:
        """MFCC steps whose 25 ms windows are complete (all remaining ones, zero-padded, when ``final``)."""
        first = self._mfcc_start + self._mfcc.shape[1]
        lo = first * STEP - self._audio_start
        audio = self._samples.data
        available = len(audio) - lo
        if final:
            steps = max(0, MFCC_PER_FRAME * self._frames_in - first)
            need = steps * STEP + TAIL
            chunk = np.pad(audio[lo:lo + need], (0, max(0, need - max(available, 0))))
        else:
            steps = max(0, (available - TAIL) // STEP)
            chunk = audio[lo:lo + steps * STEP + TAIL]
        if steps <= 0:
            return
        prev = self._prev_sample if lo == 0 else float(audio[lo - 1])
        feats = mfcc(chunk * INT16_SCALE, AUDIO_RATE, previous=None if prev is None else prev * INT16_SCALE)[:steps]
        self._mfcc = np.concatenate([self._mfcc, feats.T.astype(np.float32)], axis=1)

    # --- model windows ---------------------------------------------------------------------------------
    def _ready_frames(self) -> int:
        return min(self._frames_in, (self._mfcc_start + self._mfcc.shape[1]) // MFCC_PER_FRAME)

    def _emit(self, final: bool) -> list[FrameSync]:
        out: list[FrameSync] = []
        while self._next_emit < (self._frames_in if final else self._ready_frames()):
            start = max(0, self._next_emit - self.context)
            # a bucketed artifact runs exactly its bucket; a dynamic one just hop frames plus context
            stop = start + self.window if self.buckets else self._next_emit + self.hop + self.context
            ready = self._ready_frames()
            if stop <= ready:
                keep = stop - self.context if stop < self._frames_in or not final else stop
            elif final:
                if self.buckets and ready >= self.window:
                    start, stop = ready - self.window, ready
                else:
                    stop = ready
                keep = ready
            else:
                break
            out += self._run(start, stop, self._next_emit, keep)
            self._next_emit = keep
            # a later window reads `context` frames before the next frame; a bucketed artifact's last window is a
            # whole bucket ending at the last frame, so it may reach back up to `window` frames
            self._drop_before(max(0, self._next_emit - (self.window if self.buckets else self.context)))
        return out

    def _run(self, start: int, stop: int, keep_start: int, keep_stop: int) -> list[FrameSync]:
        crops = np.stack(self._crops[start - self._crop_start:stop - self._crop_start])
        video = self.engine.contract.video.normalise(crops)[None]
        audio = self._mfcc[:, (start * MFCC_PER_FRAME - self._mfcc_start):(stop * MFCC_PER_FRAME - self._mfcc_start)]
        outputs = self.engine.run_outputs(np.ascontiguousarray(audio[None, None]), video)
        kept = slice(keep_start - start, keep_stop - start)
        held = {"sync_probs": outputs["sync_probs"][:, kept], "correlation": outputs["correlation"][:, kept],
                "mfcc": audio[:, kept.start * MFCC_PER_FRAME:kept.stop * MFCC_PER_FRAME]}
        if self.keep_embeddings:
            held.update({name: outputs[name][:, kept] for name in EMBEDDING_NAMES})
        self._keep_result(held)
        probs, corr = held["sync_probs"], held["correlation"]
        ks = offset_values(self.engine.contract.max_offset)
        return [FrameSync(keep_start + i, int(ks[probs[:, i].argmax()]), float(probs[:, i].max()),
                          probs[:, i].copy(), corr[:, i].copy()) for i in range(probs.shape[1])]

    def _keep_result(self, held: dict[str, np.ndarray]) -> None:
        """Hold a window's kept results for :meth:`result` (and :meth:`embeddings`), forgetting the oldest
        beyond ``keep_frames``."""
        for name, part in held.items():  # astype copies: a view would keep the whole window's outputs alive
            self._held[name].append(part.astype(_HELD[name][1]))
        self._kept += held["sync_probs"].shape[1]
        while self.keep_frames is not None and self._kept > self.keep_frames:
            extra = self._kept - self.keep_frames
            oldest = self._held["sync_probs"][0].shape[1]
            for name, parts in self._held.items():
                if not parts:
                    continue
                if oldest <= extra:
                    del parts[0]
                else:
                    parts[0] = parts[0][:, extra * _HELD[name][0]:].copy()
            self._kept -= min(oldest, extra)

    def _drop_before(self, frame: int) -> None:
        """Forget what no later window reads: crops, MFCC steps and samples before ``frame``."""
        if frame > self._crop_start:
            del self._crops[:frame - self._crop_start]
            self._crop_start = frame
        step = frame * MFCC_PER_FRAME
        if step > self._mfcc_start:
            self._mfcc = self._mfcc[:, step - self._mfcc_start:]
            self._mfcc_start = step
        sample = min(self._mfcc_start * STEP, self._audio_start + len(self._samples))
        if sample > self._audio_start:
            cut = sample - self._audio_start
            self._prev_sample = float(self._samples.data[cut - 1])
            self._samples.drop_front(cut)
            self._audio_start = sample

    # --- end ---------------------------------------------------------------------------------------------
    def flush(self) -> list[FrameSync]:
        """End of stream: the remaining frames (audio shorter than the video is zero-padded, as offline)."""
        if self._closed:
            return []
        if self._frames_in * SAMPLES_PER_FRAME > self._audio_start + len(self._samples) + SAMPLES_PER_FRAME:
            raise EdgeSyncError(f"the stream has {self._frames_in} frames but audio for only "
                                f"{(self._audio_start + len(self._samples)) // SAMPLES_PER_FRAME}; push the audio "
                                "before flushing")
        self._compute_mfcc(final=True)
        out = self._emit(final=True)
        self._closed = True
        return out

    def result(self) -> SyncResult:
        """The clip-level result over every frame emitted so far, or the latest ``keep_frames`` of them."""
        if not self._kept:
            raise EdgeSyncError("no frame has been emitted yet")
        held = {name: np.concatenate(parts, axis=1) for name, parts in self._held.items() if parts}
        return SyncResult.from_outputs(held["sync_probs"], held["correlation"], backend=self.engine.backend,
                                       speech=speech_presence(held["mfcc"]))

    def embeddings(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(audio_emb, video_emb) float32 [D, T] of the frames :meth:`result` summarises; None unless the stream
        keeps them (``keep_embeddings`` on an artifact that outputs them) and a frame was emitted."""
        if not self.keep_embeddings or not self._kept:
            return None
        a, v = (np.concatenate(self._held[name], axis=1).astype(np.float32) for name in EMBEDDING_NAMES)
        return a, v

    def null_confidences(self, short: bool = False, reading: int | None = None) -> list[float]:
        """The evidence null of the frames :meth:`result` summarises, read off their embeddings
        (:func:`~edge_sync.runtimes.evidence.embedding_nulls`; ``short``: a short soundtrack's near rolls, around
        ``reading``, the result's offset: pass it where the caller holds the result, so it is not stitched again);
        empty without them or under 76 frames (38 with ``short``)."""
        embeddings = self.embeddings()
        if embeddings is None:
            return []
        if short and reading is None:
            reading = self.result().offset_frames
        return embedding_nulls(*embeddings, self.engine.contract.max_offset, short, reading if short else 0)
