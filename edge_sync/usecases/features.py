"""Features the use-case heads read, computed from one :class:`FileSync` (numpy only).

Per face-track frame (active speakers): how strongly this face's mouth agrees with the soundtrack near offset 0,
how much the mouth moves, and how loud the soundtrack is, each averaged over a short window. Per clip (quality,
desync): syncnet_python's scores, how peaked and how steady the offset evidence is over time, and whether the
mouth moves while the voice speaks.
"""
from __future__ import annotations

import numpy as np

from edge_sync.runtimes.api import FileSync, TrackSync

SPEAKER_FEATURES = ("sync_prob_near_0", "corr_contrast_0", "mouth_motion", "audio_level_db", "track_sync_prob")
QUALITY_FEATURES = ("lse_c", "lse_d", "abs_offset", "clip_probability")
DESYNC_FEATURES = QUALITY_FEATURES + ("offset_drift", "window_offset_range", "frames_at_offset", "frame_entropy",
                                      "peak_corr_std", "peak_corr_lag1", "motion_speech_ratio")
SPEAKER_WINDOW = 7  # frames each side: about half a second of evidence per decision
DRIFT_WINDOW = 25  # frames per window when following the offset over time
SPEECH_DB = -40.0  # a frame louder than this carries voice (the clips' silence sits near -100 dBFS)


def smooth(x: np.ndarray, half: int) -> np.ndarray:
    """Centred moving average with the window shrunk at the edges (no zero padding bias)."""
    x = np.asarray(x, np.float64)
    kernel = np.ones(2 * half + 1)
    return np.convolve(x, kernel, "same") / np.convolve(np.ones_like(x), kernel, "same")


def track_audio_level(sync: FileSync, track: TrackSync) -> np.ndarray:
    """[frames] soundtrack loudness (dBFS) over one track segment's frames; silence (-100) where unknown."""
    level = np.full(track.result.frames, -100.0)
    if sync.audio_level_db is not None:
        part = sync.audio_level_db[track.start_frame:track.stop_frame]
        level[:len(part)] = part
    return level


def _zero_index(track: TrackSync) -> int:
    return (track.result.frame_probs.shape[0] - 1) // 2


def speaker_frame_features(sync: FileSync, track: TrackSync) -> np.ndarray:
    """[T, len(SPEAKER_FEATURES)] for one track segment's frames."""
    res = track.result
    k0 = _zero_index(track)
    near0 = res.frame_probs[k0 - 1:k0 + 2].sum(axis=0)
    contrast = res.correlation[k0] - np.median(res.correlation, axis=0)
    motion = track.cues.get("mouth_motion", np.zeros(res.frames))
    level = track_audio_level(sync, track)
    whole = np.full(res.frames, float(res.frame_probs.mean(axis=1)[k0 - 1:k0 + 2].sum()))
    cols = [smooth(near0, SPEAKER_WINDOW), smooth(contrast, SPEAKER_WINDOW), smooth(motion, SPEAKER_WINDOW),
            smooth(level, SPEAKER_WINDOW), whole]
    return np.stack(cols, axis=1)


def _window_offsets(track: TrackSync) -> np.ndarray:
    """The offset the evidence favours in each DRIFT_WINDOW-frame window (the last one may be shorter)."""
    probs = track.result.frame_probs
    k0 = _zero_index(track)
    starts = range(0, max(1, probs.shape[1] - DRIFT_WINDOW // 2), DRIFT_WINDOW)
    return np.array([int(probs[:, s:s + DRIFT_WINDOW].mean(axis=1).argmax()) - k0 for s in starts], np.float64)


def quality_features(track: TrackSync) -> dict[str, float]:
    res = track.result
    return {"lse_c": res.confidence, "lse_d": res.min_dist, "abs_offset": float(abs(res.offset_frames)),
            "clip_probability": res.probability}


def desync_features(sync: FileSync, track: TrackSync) -> dict[str, float]:
    """Per-clip statistics of one track (the main one for a clip-level flag)."""
    res = track.result
    feats = quality_features(track)
    windows = _window_offsets(track)
    drift = float(np.polyfit(np.arange(len(windows)), windows, 1)[0]) * len(windows) if len(windows) > 1 else 0.0
    probs = np.clip(res.frame_probs.astype(np.float64), 1e-9, 1.0)
    peak = res.correlation.max(axis=0).astype(np.float64)
    centred = peak - peak.mean()
    lag1 = float((centred[1:] * centred[:-1]).mean() / max(centred.var(), 1e-12)) if len(peak) > 2 else 0.0
    motion = track.cues.get("mouth_motion", np.zeros(res.frames))
    speech = track_audio_level(sync, track) > SPEECH_DB
    talk = motion[speech].mean() if speech.any() else 0.0
    quiet = motion[~speech].mean() if (~speech).any() else talk
    feats.update({
        "offset_drift": abs(drift), "window_offset_range": float(windows.max() - windows.min()),
        "frames_at_offset": float((res.frame_offsets == res.offset_frames).mean()),
        "frame_entropy": float(-(probs * np.log(probs)).sum(axis=0).mean()),
        "peak_corr_std": float(peak.std()), "peak_corr_lag1": lag1,
        "motion_speech_ratio": float(np.log((talk + 0.1) / (quiet + 0.1))),
    })
    return feats


def vector(feats: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    return np.array([feats[n] for n in names], np.float64)
