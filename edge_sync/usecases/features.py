"""Features the use-case heads read, computed from one :class:`FileSync` (numpy only).

Per face-track frame (active speakers): how strongly this face's mouth agrees with the soundtrack near offset 0,
and by how much more than any other face on screen at that frame, how much the mouth moves, and how loud the
soundtrack is, each averaged over a short window. Per clip (quality,
desync): syncnet_python's scores, how peaked and how steady the offset evidence is over time, and whether the
mouth moves while the voice speaks.

Only the frames the decoded soundtrack covers are judged (:func:`judged_track`): a soundtrack that ends before the
video leaves the rest padded with silence, and statistics over that padding (a 2 s soundtrack on a 10 s video is
80% silence) are not what the heads were fitted on, so a short but clean clip read as out of sync.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from edge_sync.features.speech import MIN_SPEECH_FRAMES, PADDING_NOTICE_FRAMES, SpeechPresence
from edge_sync.runtimes.api import FileSync, TrackSync
from edge_sync.runtimes.result import SyncResult
from edge_sync.spec import FRAME_MS

SPEAKER_FEATURES = ("sync_prob_near_0", "corr_contrast_0", "mouth_motion", "audio_level_db", "track_sync_prob",
                    "contrast_over_others",
                    # the same sync evidence at each face's own best offset within +-SPEAKER_BEST_OFFSET: a face whose
                    # sound is a few frames off as published still speaks (session 29)
                    "sync_prob_near_best", "corr_contrast_best", "track_sync_prob_best", "contrast_best_over_others")
QUALITY_FEATURES = ("lse_c", "lse_d", "abs_offset", "clip_probability")
DESYNC_FEATURES = QUALITY_FEATURES + ("offset_drift", "window_offset_range", "frames_at_offset", "frame_entropy",
                                      "peak_corr_std", "peak_corr_lag1", "motion_speech_ratio")
SPEAKER_WINDOW = 7  # frames each side: about half a second of mouth motion and loudness per decision
# frames each side for the sync evidence: a real face's per-frame evidence is noisier than a rendered one's (session
# 29: picked by cross-validation over real two-person clips, 12 over 7 and 20)
SPEAKER_SYNC_WINDOW = 12
SPEAKER_BEST_OFFSET = 3  # frames: how far off as published a face's sound may be and still count as its own
DRIFT_WINDOW = 25  # frames per window when following the offset over time
SPEECH_DB = -40.0  # a frame louder than this carries voice (the clips' silence sits near -100 dBFS)


def covered_frames(sync: FileSync, track: TrackSync) -> int:
    """How many of a track segment's frames (from its first) the decoded soundtrack covers. All of them when the
    soundtrack's length is unknown or it falls short by less than PADDING_NOTICE_FRAMES (codec slack, the same
    tolerance below which :attr:`FileSync.warnings` says nothing), so a normal clip is judged exactly as before."""
    frames = track.result.frames
    if sync.audio_frames is None:
        return frames
    covered = int(np.clip(np.floor(sync.audio_frames) - track.start_frame, 0, frames))
    return frames if frames - covered < PADDING_NOTICE_FRAMES else covered


def _covered_speech(speech: SpeechPresence, frames: int) -> SpeechPresence:
    """Speech presence of a span's first ``frames`` frames, all covered by the soundtrack."""
    mask = speech.speech[:frames]
    speaking = int(mask.sum()) if len(mask) == frames else min(speech.speech_frames, frames)
    return replace(speech, frames=frames, speech_frames=speaking, sound_frames=min(speech.sound_frames, frames),
                   audio_coverage=None if speech.audio_coverage is None else 1.0, speech=mask)


def judged_track(sync: FileSync, track: TrackSync) -> tuple[TrackSync, str | None]:
    """(the part of ``track`` the use cases judge, why it cannot be judged or None).

    The judged part is the frames the soundtrack covers, its result recomputed over them alone (offset, LSE-D/C,
    probability, speech presence) and its cues cut to them; a fully covered track is returned as it is, so the
    heads read exactly the numbers they were fitted on. A covered span shorter than the speech a result needs
    (:data:`~edge_sync.features.speech.MIN_SPEECH_FRAMES`) holds too little to judge: the reason says so."""
    frames = track.result.frames
    covered = covered_frames(sync, track)
    if covered == frames:
        return track, None
    seconds = FRAME_MS / 1000.0
    reason = None if covered >= MIN_SPEECH_FRAMES else (
        f"the soundtrack covers {covered * seconds:.1f} s of this face's {frames * seconds:.1f} s, too little to "
        f"judge (under {MIN_SPEECH_FRAMES * seconds:.1f} s); the rest is padded silence")
    if covered == 0:
        return track, reason
    res = track.result
    cut = SyncResult.from_outputs(res.frame_probs[:, :covered], res.correlation[:, :covered], res.backend,
                                  res.seconds, None if res.speech is None else _covered_speech(res.speech, covered))
    cut.extra = dict(res.extra)
    cues = {k: v[:covered] if len(v) == frames else v for k, v in track.cues.items()}
    return TrackSync(track.track_id, track.start_frame, cut, cues, track.null_confidences,
                     track.null_too_short), reason


def judged_warnings(sync: FileSync, judged: TrackSync | None = None) -> list[str]:
    """What a reader of a use case's verdict should know: the file's news (a soundtrack shorter than the video),
    then no or little speech in ``judged`` (:func:`judged_track` of the main track; None: the file's news only).
    The sync's UNSURE line stays out: each use case judges the evidence with the heads it was given."""
    speech = None if judged is None else judged.result.speech
    return sync.file_news + (speech.speech_warnings if speech is not None else [])


def smooth(x: np.ndarray, half: int) -> np.ndarray:
    """Centred moving average with the window shrunk at the edges (no zero padding bias). The centre of the full
    convolution, not numpy's "same" mode, which returns the kernel's length for a series shorter than it."""
    x = np.asarray(x, np.float64)
    kernel = np.ones(2 * half + 1)
    return (np.convolve(x, kernel)[half:half + len(x)]
            / np.convolve(np.ones_like(x), kernel)[half:half + len(x)])


def track_audio_level(sync: FileSync, track: TrackSync) -> np.ndarray:
    """[frames] soundtrack loudness (dBFS) over one track segment's frames; silence (-100) where unknown."""
    level = np.full(track.result.frames, -100.0)
    if sync.audio_level_db is not None:
        part = sync.audio_level_db[track.start_frame:track.stop_frame]
        level[:len(part)] = part
    return level


def _zero_index(track: TrackSync) -> int:
    return (track.result.frame_probs.shape[0] - 1) // 2


def _best_index(track: TrackSync) -> int:
    """The row of the offset within +-SPEAKER_BEST_OFFSET where this face's frame-averaged evidence peaks."""
    k0, m = _zero_index(track), SPEAKER_BEST_OFFSET
    return k0 - m + int(np.argmax(track.result.frame_probs.mean(axis=1)[k0 - m:k0 + m + 1]))


def _sync_contrast(track: TrackSync, row: int) -> np.ndarray:
    """[frames] how far offset ``row``'s correlation stands above the frame's median over all offsets, smoothed."""
    res = track.result
    return smooth(res.correlation[row] - np.median(res.correlation, axis=0), SPEAKER_SYNC_WINDOW)


def _contrast_of_others(sync: FileSync, track: TrackSync, row_of: Callable[[TrackSync], int]) -> np.ndarray:
    """[frames] the highest :func:`_sync_contrast` (each at its own ``row_of``) of any other face on screen at each
    of ``track``'s frames; 0 where it is alone. Why: two people share one soundtrack, and the one whose mouth matches
    it better is the likelier speaker, however well both mouths move (a real listener's mouth moves too)."""
    best = np.full(track.result.frames, -np.inf)
    for other in sync.tracks:
        if other.track_id == track.track_id and other.start_frame == track.start_frame:
            continue
        lo, hi = max(track.start_frame, other.start_frame), min(track.stop_frame, other.stop_frame)
        if hi > lo:
            part = _sync_contrast(other, row_of(other))[lo - other.start_frame:hi - other.start_frame]
            span = slice(lo - track.start_frame, hi - track.start_frame)
            best[span] = np.maximum(best[span], part)
    return np.where(np.isfinite(best), best, 0.0)


def _sync_columns(sync: FileSync, track: TrackSync, row_of: Callable[[TrackSync], int]) -> list[np.ndarray]:
    """The sync evidence at offset row ``row_of(track)``: near it, its contrast, the whole track's, over others."""
    res, row = track.result, row_of(track)
    near = smooth(res.frame_probs[row - 1:row + 2].sum(axis=0), SPEAKER_SYNC_WINDOW)
    contrast = _sync_contrast(track, row)
    whole = np.full(res.frames, float(res.frame_probs.mean(axis=1)[row - 1:row + 2].sum()))
    return [near, contrast, whole, contrast - _contrast_of_others(sync, track, row_of)]


def speaker_frame_features(sync: FileSync, track: TrackSync) -> np.ndarray:
    """[T, len(SPEAKER_FEATURES)] for one track segment's frames."""
    res = track.result
    near0, contrast0, whole0, over0 = _sync_columns(sync, track, _zero_index)
    near, contrast, whole, over = _sync_columns(sync, track, _best_index)
    motion = track.cues.get("mouth_motion", np.zeros(res.frames))
    level = track_audio_level(sync, track)
    cols = [near0, contrast0, smooth(motion, SPEAKER_WINDOW), smooth(level, SPEAKER_WINDOW), whole0, over0,
            near, contrast, whole, over]
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
