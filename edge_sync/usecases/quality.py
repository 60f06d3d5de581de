"""Sync-quality scores (LSE-D / LSE-C style) with units, ranges, and a calibrated probability of being in sync.

What the numbers mean (the same arithmetic as syncnet_python's ``evaluate``):

* **LSE-D** (``min_dist``): the mean audio-video embedding distance at the best offset; lower = mouth and voice
  agree better. With the original SyncNet (raw 1024-d embeddings) it is a Euclidean distance, typically ~6-9
  on real talking heads. With edge-sync models the embeddings are unit length, so the distance is
  sqrt(2 - 2 cos) in [0, 2].
* **LSE-C** (``confidence``): median minus minimum of that distance-per-offset curve; higher = a sharper,
  surer best offset. Same units as LSE-D (so an edge-sync LSE-C is in [0, 2]; the original's reaches ~8-9).
* **sync_probability**: P(the clip is in sync, |offset| <= 1 frame) from a logistic head fitted on clips with
  known offsets for *this* model (``scripts/fit_usecases.py``), with the threshold stored beside it. Compare
  generators on one model only: the raw scores of two models are on different scales; their ranks agree.

LSE-D and LSE-C are read at the *best* offset, so a clip whose sound is cleanly shifted by 8 frames scores about
as well as an in-sync one (on hold-out clips LSE-C alone separates them with ROC-AUC 0.62): they rate how well
the mouth matches the voice, not whether it is in time. Read them with ``offset_frames``, or use
``sync_probability``, which weighs both (ROC-AUC 1.00 on the same clips; docs/usecases.md).

No speech, no verdict: when the main track's span has too little speech to measure an offset on (silence, steady
noise: ``no_speech``, see :mod:`edge_sync.features.speech`), LSE-C is 0, ``sync_probability`` is chance (the share
of the model's offsets that count as in sync, 3 of 31) and ``in_sync`` is None, whatever the head would say.
``speech_fraction`` and ``audio_coverage`` tell how much of the clip had speech and a soundtrack at all.

No evidence, no verdict either: where the heads carry an ``evidence_floor`` (the LSE-C under every right answer of
this model on real clips with known offsets), a clip scoring below it gets ``in_sync`` None and ``low_evidence``:
on real faces the model cannot read, the best offset is noise and the head would call an in-sync clip out of sync.
The same holds for a clip whose LSE-C is not 1.5x what its own sound gives against its video rolled out of any
alignment (:mod:`edge_sync.runtimes.evidence`): evidence a noise-level floor fixed for all clips lets through.

A soundtrack shorter than the video: the scores are read over the frames it covers only (``judged_frames``; the
rest is padded silence the head was not fitted on), ``warnings`` says so, and a covered span too short to judge is
treated as no speech.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._json import JsonResult
from edge_sync.runtimes.api import FileSync
from edge_sync.runtimes.evidence import unsure_reason
from edge_sync.spec import FRAME_MS
from edge_sync.usecases.features import QUALITY_FEATURES, judged_track, judged_warnings, quality_features, vector
from edge_sync.usecases.heads import UsecaseHeads, resolve_heads

IN_SYNC_FRAMES = 1  # |offset| <= 1 frame (40 ms) counts as in sync, as in the LRS2 protocol


@dataclass
class QualityScore(JsonResult):
    path: str
    lse_d: float
    lse_c: float
    offset_frames: int
    audio_delay_ms: float
    frames: int
    scale: str  # "unit embeddings, sqrt(2-2cos) in [0, 2]" or "syncnet_python raw embeddings"
    sync_probability: float | None = None
    in_sync: bool | None = None
    threshold: float | None = None
    track_id: int = 0
    backend: str = ""
    no_speech: bool = False  # too little speech (or soundtrack) to judge: in_sync None, sync_probability at chance
    low_evidence: bool = False  # under the evidence floor or 1.5x its null: in_sync None, the head's p a hint
    speech_fraction: float | None = None  # share of the scored span with speech (None: not measured)
    audio_coverage: float | None = None  # share of the video the decoded soundtrack covers
    judged_frames: int | None = None  # frames the scores are read over: those of ``frames`` the soundtrack covers
    warnings: list[str] = field(default_factory=list)  # a short soundtrack, little or no speech

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("lse_d", "lse_c", "sync_probability", "speech_fraction", "audio_coverage"):
            if d[k] is not None:
                d[k] = round(float(d[k]), 4)
        return d


UNIT_SCALE = "unit embeddings: distance sqrt(2-2cos) in [0, 2]"
LEGACY_SCALE = "syncnet_python: Euclidean distance of raw SyncNet embeddings"


def score_sync(sync: FileSync, heads: UsecaseHeads | None = None) -> QualityScore:
    """Scores of the clip's main face track, over the frames its soundtrack covers."""
    track, too_short = judged_track(sync, sync.main)
    res = track.result
    no_speech = res.no_speech or too_short is not None
    score = QualityScore(sync.path, res.min_dist, 0.0 if no_speech else res.confidence, res.offset_frames,
                         res.audio_delay_ms, sync.main.result.frames, UNIT_SCALE, track_id=track.track_id,
                         backend=res.backend, no_speech=no_speech,
                         speech_fraction=None if res.speech is None else res.speech.fraction,
                         audio_coverage=sync.audio_coverage, judged_frames=res.frames,
                         warnings=judged_warnings(sync, track) + ([too_short] if too_short else []))
    head = heads.get("quality") if heads else None
    if head is not None:
        score.threshold = head.threshold
        if no_speech:  # nothing to judge: chance, and no verdict either way
            score.sync_probability = in_sync_chance(res.frame_probs.shape[0])
        else:
            p = float(head.probability(vector(quality_features(track), QUALITY_FEATURES)))
            score.sync_probability, score.in_sync = p, bool(p >= head.threshold)
            reason = unsure_reason(score.lse_c, heads.evidence_floor, track.null_confidences, track.null_too_short)
            if reason is not None:  # too little evidence: no verdict, the head's p kept as a hint
                score.in_sync, score.low_evidence = None, True
                score.warnings.append(f"too little sync evidence: {reason}, so the offset is unsure and there is "
                                      "no verdict")
    return score


def in_sync_chance(offsets: int) -> float:
    """P(in sync) with no evidence: the share of a model's 2K+1 offsets that count as in sync (3 of 31)."""
    return min(1.0, (2 * IN_SYNC_FRAMES + 1) / offsets)


def score_file(engine: Any, path: str | Path, heads: UsecaseHeads | str | Path | None = "auto",
               null_check: bool = True) -> QualityScore:
    """Analyse one video with ``engine`` and score it (``heads='auto'``: the heads fitted for its model;
    ``null_check``: measure the evidence null, see :meth:`edge_sync.runtimes.api.Engine.sync_file`)."""
    heads = resolve_heads(engine.manifest, heads)
    return score_sync(engine.sync_file(path, null_check=null_check), heads)


def score_legacy_checkpoint(checkpoint: str | Path, path: str | Path) -> QualityScore:
    """The original SyncNet's own LSE-D / LSE-C on a video (needs PyTorch: ``pip install edge-sync[export]``).

    Runs syncnet_python's sliding-window embeddings and offset search exactly (:mod:`edge_sync.scoring`) on
    the 224x224 face crops of the longest face track, so the numbers compare with published ones.
    """
    from edge_sync._deps import require

    torch = require("torch", "export", "scoring with an original SyncNet checkpoint")
    from edge_sync.features.clip import prepare_clip
    from edge_sync.models.legacy import LegacySyncNetFCN
    from edge_sync.spec import LEGACY_FACE

    model = LegacySyncNetFCN.from_checkpoint(checkpoint).eval()
    clip = prepare_clip(path, LEGACY_FACE)
    seg = clip.main_segment()
    if seg.frames < 5:
        raise ValueError(f"{path}: the longest face track has {seg.frames} frames; the original SyncNet needs 5+")
    out = model.offsets(torch.from_numpy(np.ascontiguousarray(seg.audio)), torch.from_numpy(seg.video))
    return QualityScore(str(path), out.min_dist, out.confidence, out.offset_frames, float(out.offset_frames * FRAME_MS),
                        seg.frames, LEGACY_SCALE, track_id=seg.track_id, backend="pytorch (syncnet_python)")
