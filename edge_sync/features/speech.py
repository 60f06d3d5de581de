"""Speech presence: how much of an analysed span has sound at all, and how much has speech (numpy only).

A lip-sync offset is only measurable where someone speaks: on silence or on steady noise the correlation curve is
flat and its minimum lands anywhere (a silent clip read -14 frames at the head's P 0.67, above a genuine clip's).
This module lets every result say so. It reads the MFCC the model already gets (python_speech_features' layout:
coefficient 0 is the log energy of each 25 ms window, 100 per second), so ``Engine.run`` (numpy in), the stream
and ``sync_file`` decide from the same numbers, and streamed results equal offline ones.

Per 10 ms step, two cues:

* **level** (dB): the pre-emphasised window energy against a full-scale signal's (about dBFS of the high-passed
  sound; white noise at RMS 0.03 reads -28 dB, digital silence -270 dB);
* **shape distance** (dB): how far the step's spectral envelope (the 12 cepstral coefficients, lifter undone, back
  on the 26 mel bands, its level removed) lies from the noise's envelope (the median envelope of the quietest
  fifth of the steps around it), as an RMS over bands. Noise of any colour, loudness or modulation reads ~1.3 dB
  (99th percentile < 3); speech 4-15 dB, and still ~4 dB under white noise 10 dB below it.

Both are judged against an **adaptive noise floor**: the 10th percentile of the levels over a 20 s neighbourhood
(per 1 s block). A step is speech when it is louder than :data:`SPEECH_MIN_DB`, its envelope is unlike the noise's
(:data:`SHAPE_MIN_DB`), and it rises :data:`SPEECH_MARGIN_DB` above the floor (or at least 1 dB, with an envelope
clearly unlike the noise's, :data:`SHAPE_CLEAR_DB`: speech in loud noise). A video frame (4 steps) is speech when
2 of its steps are; runs shorter than 3 frames (clicks) are dropped and pauses of up to 5 frames inside speech
kept, as a voice-activity detector's hangover does. Steady or modulated noise, hum and tones never read as speech;
loud sounds that change both loudness and timbre (music, laughter) can. It is a gate for "is there anything to
measure an offset on", not a speech classifier.

``webrtcvad`` (``webrtcvad-wheels``) was weighed as the detector and left out: a compiled extension (one more wheel
per device platform, outside the numpy-only rule), and in its default mode it calls loud white or pink noise 100%
speech, the very case this gate exists for. On the shared real clips this detector agrees with it on ~91% of the
frames (both on real speech; see README).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from edge_sync.features.mfcc import _dct_matrix, mel_filterbank
from edge_sync.spec import AUDIO_RATE, FRAME_MS, MFCC, MFCC_PER_FRAME

_DB = 10.0 * np.log10(np.e)  # natural log -> dB of power
# energy of a 25 ms window of full-scale (RMS 1.0 -> int16 32768) white noise: levels are dB against it
_FULL_SCALE_DB = 10.0 * np.log10(0.5 * round(MFCC.winlen * AUDIO_RATE) * 32768.0 ** 2)
SILENCE_DB = -80.0  # a step quieter than this has no sound (digital silence, padding, the quietest room tone)
SPEECH_MIN_DB = -70.0  # speech is louder than this (the quietest real clip here speaks at -51..-43 dB)
SPEECH_MARGIN_DB = 6.0  # ... and louder than the noise floor by this much
SHAPE_MIN_DB = 2.5  # ... with an envelope at least this far from the noise's (noise itself: p99 < 3)
SHAPE_CLEAR_DB = 4.0  # an envelope this far from the noise's needs only 1 dB above the floor (speech in loud noise)
NOISE_FLOOR_PERCENTILE = 10.0
NOISE_SHAPE_PERCENTILE = 20.0  # the noise envelope is the median of the steps at most this quiet
FLOOR_BLOCK_STEPS = 100  # the floor is estimated per 1 s block ...
FLOOR_HALF_WINDOW_BLOCKS = 10  # ... from the steps of the 10 s each side
STEPS_FOR_FRAME = 2  # of a frame's 4 steps, this many must be speech
MIN_RUN_FRAMES = 3  # speech runs shorter than this (120 ms) are clicks, dropped
HANGOVER_FRAMES = 5  # pauses up to this (200 ms) inside speech count as speech
MIN_SPEECH_FRAMES = 12  # less speech than this (~0.5 s) in a span: nothing to measure an offset on
LITTLE_SPEECH_FRACTION = 0.2  # below this share, a result says its offset rests on little speech
PADDING_NOTICE_FRAMES = 3  # a soundtrack ending this much (120 ms) before the video is reported; less is codec slack


@lru_cache(maxsize=1)
def _envelope_basis() -> tuple[np.ndarray, np.ndarray]:
    """([12, 26] cepstral coefficients 1..12 -> log power per mel band in dB, lifter undone and with white noise's
    own envelope (filter widths, pre-emphasis) taken out; [26] that white-noise envelope)."""
    rate = MFCC.sample_rate
    bank = mel_filterbank(MFCC.nfilt, MFCC.nfft, rate, MFCC.lowfreq, MFCC.highfreq or rate / 2)
    freqs = np.arange(MFCC.nfft // 2 + 1) / MFCC.nfft
    emphasis = np.abs(1.0 - MFCC.preemph * np.exp(-2j * np.pi * freqs)) ** 2
    n = np.arange(1, MFCC.numcep)
    lifter = 1.0 + (MFCC.ceplifter / 2.0) * np.sin(np.pi * n / MFCC.ceplifter)
    dct = _dct_matrix(MFCC.nfilt, MFCC.numcep)[1:]
    white = (dct @ np.log(bank @ emphasis)) @ dct  # as 12 coefficients keep it
    return _DB * dct / lifter[:, None], _DB * white


def _envelope(cep: np.ndarray) -> np.ndarray:
    """MFCC steps [13, n] -> [n, 26] spectral envelope in dB relative to white noise's, mean over bands removed."""
    basis, white = _envelope_basis()
    env = cep[1:].T @ basis - white
    return env - env.mean(axis=1, keepdims=True)


def step_cues(mfcc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MFCC [13, S] (the model's audio layout) -> per 10 ms step: level (dB), noise floor (dB), shape distance
    from the noise's envelope (dB). The floor and the noise envelope come from the 20 s around each 1 s block."""
    c = np.asarray(mfcc, np.float64)
    if c.ndim != 2 or c.shape[0] != MFCC.numcep:
        raise ValueError(f"step_cues takes MFCC [{MFCC.numcep}, steps], got {c.shape}")
    level = _DB * c[0] - _FULL_SCALE_DB
    floored = np.maximum(level, -100.0)
    floor, dist = np.empty_like(level), np.empty_like(level)
    for lo_b in range(0, len(level), FLOOR_BLOCK_STEPS):
        hi_b = lo_b + FLOOR_BLOCK_STEPS
        lo = max(0, lo_b - FLOOR_HALF_WINDOW_BLOCKS * FLOOR_BLOCK_STEPS)
        hi = hi_b + FLOOR_HALF_WINDOW_BLOCKS * FLOOR_BLOCK_STEPS
        around = floored[lo:hi]
        floor[lo_b:hi_b] = np.percentile(around, NOISE_FLOOR_PERCENTILE)
        quiet = lo + np.flatnonzero(around <= np.percentile(around, NOISE_SHAPE_PERCENTILE))
        noise = np.median(_envelope(c[:, quiet]), axis=0)
        dist[lo_b:hi_b] = np.sqrt(((_envelope(c[:, lo_b:hi_b]) - noise) ** 2).mean(axis=1))
    return level, floor, dist


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)] of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _smooth(speech: np.ndarray) -> np.ndarray:
    out = np.zeros_like(speech)
    runs = [(a, b) for a, b in _runs(speech) if b - a >= MIN_RUN_FRAMES]
    for i, (a, b) in enumerate(runs):
        out[a:b] = True
        if i + 1 < len(runs) and runs[i + 1][0] - b <= HANGOVER_FRAMES:
            out[b:runs[i + 1][0]] = True
    return out


@dataclass(frozen=True)
class SpeechPresence:
    """What an analysed span's soundtrack holds. ``fraction`` is the share of its frames with speech,
    ``sound_fraction`` the share with any sound above :data:`SILENCE_DB`, ``audio_coverage`` the share the decoded
    soundtrack really covers (the rest was padded with silence; None when unknown, as for numpy input).
    ``no_speech``: too little speech to measure an offset on, so results say so instead of guessing."""

    frames: int
    speech_frames: int
    sound_frames: int
    noise_floor_db: float
    audio_coverage: float | None = None
    speech: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)  # [frames] per frame

    @property
    def fraction(self) -> float:
        return self.speech_frames / self.frames if self.frames else 0.0

    @property
    def sound_fraction(self) -> float:
        return self.sound_frames / self.frames if self.frames else 0.0

    @property
    def padded_frames(self) -> int:
        """Frames of the span past the decoded soundtrack (analysed as silence)."""
        return 0 if self.audio_coverage is None else int(round(self.frames * (1.0 - self.audio_coverage)))

    @property
    def no_speech(self) -> bool:
        return self.speech_frames < MIN_SPEECH_FRAMES

    @property
    def speech_warnings(self) -> list[str]:
        """No or little speech in the span, in words (empty when it speaks enough)."""
        seconds = FRAME_MS / 1000.0
        if self.no_speech:
            what = "no sound" if self.sound_frames == 0 else "no speech"
            return [f"{what}: speech in {self.speech_frames * seconds:.1f} s of the {self.frames * seconds:.1f} s "
                    "analysed, too little to measure an offset on; the offset is a guess and P is set to chance"]
        if self.fraction < LITTLE_SPEECH_FRACTION:
            return [f"little speech: the offset rests on {self.speech_frames * seconds:.1f} s of speech "
                    f"({self.fraction:.0%} of the span)"]
        return []

    @property
    def warnings(self) -> list[str]:
        """What a reader of the span's offset should know: padding past the soundtrack, no or little speech."""
        seconds = FRAME_MS / 1000.0
        out = []
        if self.padded_frames >= PADDING_NOTICE_FRAMES:
            out.append(f"the soundtrack covers {self.frames * self.audio_coverage * seconds:.1f} s of the "
                       f"{self.frames * seconds:.1f} s analysed; the other {self.padded_frames * seconds:.1f} s "
                       "were padded with silence")
        return out + self.speech_warnings

    def with_coverage(self, covered_frames: float) -> "SpeechPresence":
        """The same, knowing that the decoded soundtrack covers ``covered_frames`` of the span's frames."""
        cover = float(np.clip(covered_frames / self.frames, 0.0, 1.0)) if self.frames else 0.0
        return replace(self, audio_coverage=cover)

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": round(self.fraction, 4), "sound_fraction": round(self.sound_fraction, 4),
                "audio_coverage": None if self.audio_coverage is None else round(self.audio_coverage, 4),
                "speech_seconds": round(self.speech_frames * FRAME_MS / 1000.0, 2),
                "padded_seconds": round(self.padded_frames * FRAME_MS / 1000.0, 2),
                "noise_floor_db": round(self.noise_floor_db, 1), "no_speech": self.no_speech,
                "warnings": self.warnings}


def speech_presence(mfcc: np.ndarray, covered_frames: float | None = None) -> SpeechPresence:
    """Speech presence of a span of T video frames from its model audio input, MFCC [1, 1, 13, 4T] or [13, 4T].
    ``covered_frames``: how many of the T frames the decoded soundtrack covers (None: unknown).

    The MFCC is read at float16 precision, which is what a stream keeps of it: streamed and offline results
    decide from identical numbers."""
    m = np.asarray(mfcc)
    m = m.reshape(m.shape[-2], m.shape[-1]).astype(np.float16)
    frames = m.shape[1] // MFCC_PER_FRAME
    if frames == 0:
        return SpeechPresence(0, 0, 0, -100.0, None if covered_frames is None else 0.0)
    level, floor, dist = step_cues(m[:, :frames * MFCC_PER_FRAME])
    step = (level > SPEECH_MIN_DB) & (dist > SHAPE_MIN_DB) & (
        (level > floor + SPEECH_MARGIN_DB) | ((level > floor + 1.0) & (dist > SHAPE_CLEAR_DB)))
    speech = _smooth(step.reshape(frames, MFCC_PER_FRAME).sum(axis=1) >= STEPS_FOR_FRAME)
    sound = level.reshape(frames, MFCC_PER_FRAME).max(axis=1) > SILENCE_DB
    presence = SpeechPresence(frames, int(speech.sum()), int(sound.sum()), float(np.median(floor)), speech=speech)
    return presence if covered_frames is None else presence.with_coverage(covered_frames)
