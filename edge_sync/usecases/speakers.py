"""Active speaker detection: for every face track, a per-frame speaking probability, and who speaks when.

A face speaks where its mouth agrees with the shared soundtrack at offset ~0 (the sync evidence), better than the
other faces on screen do, its mouth moves, and the soundtrack carries voice. A small logistic head fitted on
two-person clips with known turns (rendered ones, and pairs of real people side by side: a real listener's mouth
moves too) weighs them; without a head (a model nobody fitted one for) the score is the smoothed sync evidence
alone.
A track segment whose span has no speech in the soundtrack (:mod:`edge_sync.features.speech`) speaks nowhere.
Past the end of a soundtrack shorter than the video there is nothing to hear: those frames speak nowhere, the
frames before are judged on their own (as the heads were fitted), and ``warnings`` says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._json import JsonResult
from edge_sync.runtimes.api import FileSync
from edge_sync.usecases.features import SPEAKER_FEATURES, SPEECH_DB, judged_track, judged_warnings, \
    speaker_frame_features
from edge_sync.usecases.heads import UsecaseHeads, resolve_heads

MIN_TURN_FRAMES = 5  # shorter speaking runs are merged away (0.2 s)


@dataclass
class SpeakerTrack:
    """One face-track segment: its frames, where the face is, and its speaking probability per frame."""

    track_id: int
    start_frame: int
    probability: np.ndarray  # [frames]
    box: np.ndarray  # [frames, 3] centre x, centre y, width (pixels)
    speech_fraction: float | None = None  # share of the judged span (what the soundtrack covers) with speech
    no_speech: bool = False  # too little speech (or soundtrack) in the span: probability 0 throughout

    @property
    def stop_frame(self) -> int:
        return self.start_frame + len(self.probability)

    @property
    def centre_x(self) -> float:
        return float(self.box[:, 0].mean()) if len(self.box) else float("nan")


@dataclass
class Speakers(JsonResult):
    path: str
    num_frames: int
    tracks: list[SpeakerTrack]
    threshold: float
    fitted: bool  # False: no head for this model, the probability is the raw sync evidence
    turns: list[dict[str, int]] = field(default_factory=list)  # {"track_id", "start_frame", "stop_frame"}
    audio_coverage: float | None = None  # share of the video the decoded soundtrack covers
    warnings: list[str] = field(default_factory=list)  # a soundtrack shorter than the video

    @property
    def no_speech(self) -> bool:
        """No track's span has speech: nobody speaks, there is nothing to attribute."""
        return all(t.no_speech for t in self.tracks)

    def speaking_matrix(self) -> tuple[list[int], np.ndarray]:
        """(track ids, [tracks, num_frames] probability; NaN where the track is not on screen)."""
        ids = sorted({t.track_id for t in self.tracks})
        out = np.full((len(ids), self.num_frames), np.nan)
        for t in self.tracks:
            out[ids.index(t.track_id), t.start_frame:t.stop_frame] = t.probability[:self.num_frames - t.start_frame]
        return ids, out

    def active_speaker(self) -> np.ndarray:
        """[num_frames] the track id speaking most surely at each frame, -1 where nobody passes the threshold."""
        ids, p = self.speaking_matrix()
        filled = np.nan_to_num(p, nan=-1.0)
        best = filled.argmax(axis=0)
        return np.where(filled.max(axis=0) >= self.threshold, np.asarray(ids)[best], -1)

    def to_dict(self, per_frame: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "num_frames": self.num_frames, "threshold": self.threshold,
                             "fitted_head": self.fitted, "no_speech": self.no_speech, "turns": self.turns,
                             "audio_coverage": None if self.audio_coverage is None else round(self.audio_coverage, 4),
                             "warnings": self.warnings,
                             "tracks": [{"track_id": t.track_id, "start_frame": t.start_frame,
                                         "stop_frame": t.stop_frame, "centre_x": round(t.centre_x, 1),
                                         "no_speech": t.no_speech, "speech_fraction": None if t.speech_fraction
                                         is None else round(t.speech_fraction, 3),
                                         "speaking_fraction": round(float((t.probability >= self.threshold).mean()),
                                                                    3)} for t in self.tracks]}
        if per_frame:
            for row, t in zip(d["tracks"], self.tracks):
                row["probability"] = [round(float(p), 3) for p in t.probability]
        return d


def _turns(speakers: Speakers) -> list[dict[str, int]]:
    active = speakers.active_speaker()
    turns: list[dict[str, int]] = []
    start = 0
    for t in range(1, len(active) + 1):
        if t == len(active) or active[t] != active[start]:
            if active[start] >= 0 and t - start >= MIN_TURN_FRAMES:
                last = turns[-1] if turns else None
                if last and last["track_id"] == active[start] and start - last["stop_frame"] < MIN_TURN_FRAMES:
                    last["stop_frame"] = t
                else:
                    turns.append({"track_id": int(active[start]), "start_frame": start, "stop_frame": t})
            start = t
    return turns


def detect_speakers(sync: FileSync, heads: UsecaseHeads | None = None) -> Speakers:
    head = heads.get("speakers") if heads else None
    tracks = []
    for track in sync.tracks:
        judged, too_short = judged_track(sync, track)  # the frames the soundtrack covers
        feats = speaker_frame_features(sync, judged)
        if head is not None:  # the columns it was fitted on (a heads file from before a feature was added works)
            prob = head.probability(feats if head.features == SPEAKER_FEATURES
                                    else feats[:, [SPEAKER_FEATURES.index(name) for name in head.features]])
        else:  # raw evidence: sync near 0, zeroed where the soundtrack is silent
            prob = feats[:, SPEAKER_FEATURES.index("sync_prob_near_0")] * (
                feats[:, SPEAKER_FEATURES.index("audio_level_db")] > SPEECH_DB)
        speech = judged.result.speech
        no_speech = judged.result.no_speech or too_short is not None
        probability = np.zeros(track.result.frames)  # past the soundtrack nobody is heard
        if not no_speech:
            probability[:judged.result.frames] = prob
        box = track.cues.get("box", np.zeros((0, 3), np.float32))
        tracks.append(SpeakerTrack(track.track_id, track.start_frame, probability, box,
                                   None if speech is None else speech.fraction, no_speech))
    result = Speakers(sync.path, sync.num_frames, tracks, head.threshold if head else 0.5, head is not None,
                      audio_coverage=sync.audio_coverage, warnings=judged_warnings(sync))
    result.turns = _turns(result)
    return result


def speakers_file(engine: Any, path: str | Path, heads: UsecaseHeads | str | Path | None = "auto") -> Speakers:
    heads = resolve_heads(engine.manifest, heads)
    # null_check=False: the evidence null is read by sync, score and fix only
    return detect_speakers(engine.sync_file(path, null_check=False), heads)
