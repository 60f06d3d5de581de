"""Desync / deepfake flag: is this clip's sound not the sound of this mouth, or not in time with it?

Three kinds of evidence, from one analysis of the clip's main face track:

* **offset**: a constant offset beyond +-1 frame, or one that drifts over the clip (windowed offsets);
* **confidence**: weak, flat sync evidence while the soundtrack speaks and the mouth is visible;
* **statistics**: how the per-frame evidence behaves over time (entropy, steadiness of the correlation peak,
  mouth motion while the voice speaks vs while it is silent) -- the plan's statistics classifier.

A logistic head fitted on synthetic manipulations (shifted, drifting, swapped audio, frozen mouth) combines them
into P(manipulated); the reasons list names the evidence that fired, so a flag can be explained.

With no speech in the main track's span (silence, steady noise; :mod:`edge_sync.features.speech`) there is no
evidence either way: ``flagged`` is None (neither in nor out of sync), P(manipulated) is None, and the one reason
given is "no speech".

A soundtrack shorter than the video is judged over the frames it covers only (the padded silence after it would
read as evidence of a frozen or drifting clip); ``warnings`` says so, and a covered span too short to judge gets no
verdict either, with that as its reason. So does a soundtrack under 1.52 s (too short for an evidence check,
:mod:`edge_sync.runtimes.evidence`): 1 s cuts of real in-sync clips read right about half the time, so its
statistics would flag intact clips.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sync._json import JsonResult
from edge_sync.runtimes.api import FileSync
from edge_sync.runtimes.evidence import TOO_SHORT, soundtrack_null_rolls
from edge_sync.spec import FRAME_MS
from edge_sync.usecases.features import DESYNC_FEATURES, desync_features, judged_track, judged_warnings, vector
from edge_sync.usecases.heads import LogisticHead, UsecaseHeads, resolve_heads

MAX_SYNC_OFFSET = 1  # frames: beyond this the clip is out of sync whatever the head says
# the windowed offset moves this much over the clip, and its windows span twice that: drift (in-sync clips of
# ~4 s reach ~3.5 frames on the bundled student, their silent windows carrying no evidence)
DRIFT_FRAMES = 4
FLAT_CONFIDENCE = 0.03  # LSE-C below this on unit embeddings: no sync evidence at all


@dataclass
class DesyncFlag(JsonResult):
    path: str
    flagged: bool | None  # None: no speech (or too short a soundtrack), nothing to judge
    probability: float | None  # P(manipulated) from the fitted head (None: no head for this model, or no speech)
    threshold: float | None
    reasons: list[str]
    features: dict[str, float] = field(default_factory=dict)
    offset_frames: int = 0
    no_speech: bool = False
    speech_fraction: float | None = None  # share of the judged span with speech (None: not measured)
    audio_coverage: float | None = None  # share of the video the decoded soundtrack covers
    warnings: list[str] = field(default_factory=list)  # a short soundtrack, little or no speech

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "flagged": self.flagged,
                "probability": None if self.probability is None else round(self.probability, 4),
                "threshold": self.threshold, "reasons": self.reasons, "offset_frames": self.offset_frames,
                "no_speech": self.no_speech,
                "speech_fraction": None if self.speech_fraction is None else round(self.speech_fraction, 4),
                "audio_coverage": None if self.audio_coverage is None else round(self.audio_coverage, 4),
                "warnings": self.warnings,
                "features": {k: round(v, 4) for k, v in self.features.items()}}


def _reasons(f: dict[str, float]) -> list[str]:
    out = []
    if f["abs_offset"] > MAX_SYNC_OFFSET:
        out.append(f"constant offset of {int(f['abs_offset'])} frames")
    if f["offset_drift"] >= DRIFT_FRAMES and f["window_offset_range"] > DRIFT_FRAMES:
        out.append(f"offset drifts by ~{f['offset_drift']:.0f} frames over the clip")
    if f["lse_c"] < FLAT_CONFIDENCE:
        out.append(f"no sync evidence (LSE-C {f['lse_c']:.3f})")
    if f["motion_speech_ratio"] < 0.05:
        out.append("the mouth moves no more while the voice speaks than in silence")
    return out


def decide(feats: dict[str, float], head: LogisticHead | None) -> tuple[bool, float | None]:
    """(flagged, P(manipulated)): the head's verdict, or a constant offset beyond +-1 frame, which is out of
    sync by definition however natural the rest looks."""
    offset_rule = feats["abs_offset"] > MAX_SYNC_OFFSET
    if head is None:
        return bool(_reasons(feats)), None
    p = float(head.probability(vector(feats, DESYNC_FEATURES)))
    return bool(p >= head.threshold or offset_rule), p


def flag_sync(sync: FileSync, heads: UsecaseHeads | None = None) -> DesyncFlag:
    """The main face track's flag, judged over the frames its soundtrack covers."""
    track, too_short = judged_track(sync, sync.main)
    res = track.result
    feats = desync_features(sync, track)
    head = heads.get("desync") if heads else None
    threshold = None if head is None else head.threshold
    speech = None if res.speech is None else res.speech.fraction
    warnings = judged_warnings(sync, track)
    if res.no_speech or too_short:
        why = too_short or (res.speech.speech_warnings[0] if res.speech is not None and res.speech.speech_warnings
                            else "no speech")
        return DesyncFlag(sync.path, None, None, threshold, [why], feats, res.offset_frames, no_speech=True,
                          speech_fraction=speech, audio_coverage=sync.audio_coverage,
                          warnings=warnings + ([too_short] if too_short else []))
    soundtrack = res.frames if sync.audio_frames is None else int(sync.audio_frames)  # as sync_file measures it
    if not soundtrack_null_rolls(soundtrack, (res.frame_probs.shape[0] - 1) // 2):
        why = (f"{TOO_SHORT}: {soundtrack * FRAME_MS / 1000:.2f} s of sound is under 1.52 s, and 1 s cuts of real "
               "in-sync clips read right about half the time: no verdict")
        return DesyncFlag(sync.path, None, None, threshold, [why], feats, res.offset_frames, speech_fraction=speech,
                          audio_coverage=sync.audio_coverage, warnings=warnings + [why])
    reasons = _reasons(feats)
    flagged, p = decide(feats, head)
    if flagged and not reasons:
        reasons = ["its temporal statistics look like the manipulated clips the head was fitted on"]
    if flagged:  # a short soundtrack or little speech weighs on every statistic above: say so beside them
        reasons += warnings
    return DesyncFlag(sync.path, flagged, p, threshold, reasons if flagged else [], feats, res.offset_frames,
                      speech_fraction=speech, audio_coverage=sync.audio_coverage, warnings=warnings)


def desync_file(engine: Any, path: str | Path, heads: UsecaseHeads | str | Path | None = "auto") -> DesyncFlag:
    heads = resolve_heads(engine.manifest, heads)
    # null_check=False: the evidence null is read by sync, score and fix only
    return flag_sync(engine.sync_file(path, null_check=False), heads)
