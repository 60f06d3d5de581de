"""Is a clip's sync evidence above what its own sound gives against its own video at no alignment at all?

A clip's ``confidence`` (LSE-C: median - min of the distance curve) is never zero: noise has a lowest point too,
and how low depends on the clip (its length, how much the mouth moves, how the speech is paced). One fixed floor
cannot tell a short, busy clip's noise from a weak true alignment. The **null** measures the noise of this clip:
the same video scored against the same soundtrack rolled (circularly) by R frames, with R at least 2K + margin
from every alignment the model can read, so no offset of the rolled copy can be the true one. Three rolls spread
over the soundtrack; the null confidence is their median, and the reading is **unsure** when its confidence is
not ``MIN_EVIDENCE_RATIO`` times it.

An artifact that outputs its per-frame embeddings (``contract.embeddings``) gives the null without running the model
again: :func:`embedding_nulls` rolls the segment's audio embeddings round the segment against its video
embeddings, which is what scoring rolled sound computes, up to the audio encoder's few frames of context at the
wrap (session 28, ``scripts/embedding_null_check.py``). ``sync_file`` and ``edge-sync eval --data`` read it so
wherever the model gives its embeddings and the segment (or case) is 76+ frames long, and stream it otherwise.

The margin and 1.5 were fixed on the real hold-out in session 25 (``docs/real_footage.md``). With the bundled INT8
student and the null read off its embeddings (session 28), ``edge-sync eval --data`` finds 4 of the hold-out's 72
right answers under the null (all four ``pcavs_620900105``'s, the clip read at chance-level confidence) and, on the
16 independent clips with planted shifts, 10 of the 13 wrong answers and 7 of the 131 right ones (streamed: 2/72;
11/13 and 4/131). ``edge-sync score`` says UNSURE, not OUT OF SYNC, on the one in-sync clip it misreads. A
soundtrack (or, for the embedding null, a segment) under 3.04 s (2 (2K + margin) frames) has no null: the floor
alone judges it. numpy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_sync.runtimes.result import curve_confidence, distance_curve

NULL_MARGIN_FRAMES = 8  # how far (frames) a rolled copy's nearest alignment stays outside the offsets read
NULL_ROLLS = 3  # rolled copies per clip: their median is the null
MIN_EVIDENCE_RATIO = 1.5  # a reading's confidence must be this many times the null's (fixed on the hold-out)


def null_rolls(frames: int, max_offset: int) -> list[int]:
    """Rolls R (frames; frame t then hears frame t + R) for a soundtrack of ``frames`` frames: spread over
    [2K + margin, frames - 2K - margin], so neither a roll nor its wrap brings any alignment within K + margin of
    the offsets -K..K; none when the soundtrack is shorter than 2 (2K + margin) frames (3 s for K = 15)."""
    base = 2 * max_offset + NULL_MARGIN_FRAMES
    if frames < 2 * base:
        return []
    span = frames - 2 * base
    return sorted({base + j * span // (NULL_ROLLS - 1) for j in range(NULL_ROLLS)})


def shifted_correlation(video_emb: np.ndarray, audio_emb: np.ndarray, max_offset: int) -> np.ndarray:
    """The contract's ``correlation`` [2K+1, T] from unit embeddings [D, T]: video frame t . audio frame t+k, 0 where
    t+k is outside the clip (numpy's twin of :func:`edge_sync.models.correlation.shifted_correlation`)."""
    frames = video_emb.shape[1]
    out = np.zeros((2 * max_offset + 1, frames), np.float32)
    for i, k in enumerate(range(-max_offset, max_offset + 1)):
        lo, hi = max(0, -k), min(frames, frames - k)
        if hi > lo:
            out[i, lo:hi] = np.einsum("dt,dt->t", video_emb[:, lo:hi], audio_emb[:, lo + k:hi + k])
    return out


def embedding_nulls(audio_emb: np.ndarray, video_emb: np.ndarray, max_offset: int) -> list[float]:
    """The null's confidences read off a segment's own embeddings [D, T]: the audio embeddings rolled round the
    segment by each of :func:`null_rolls` (T)'s rolls, against the video's. Why: the same statistic as scoring the
    video against rolled sound, without running the model again; which rolls are drawn moves a few borderline
    cases either way (``scripts/embedding_null_check.py``, docs/real_footage.md session 28). The roll wraps round
    the segment, not the soundtrack, so a segment under 3.04 s has none (``sync_file`` streams its null then)."""
    rolls = null_rolls(video_emb.shape[1], max_offset)
    return [curve_confidence(distance_curve(shifted_correlation(video_emb, np.roll(audio_emb, -r, axis=1),
                                                                max_offset))) for r in rolls]


def evidence_ratio(confidence: float, null_confidences: Sequence[float]) -> float | None:
    """The reading's confidence over the median null confidence (None: no null, or a null of zero)."""
    nulls = [float(c) for c in null_confidences if np.isfinite(c)]
    if not nulls:
        return None
    null = float(np.median(nulls))
    return float(confidence) / null if null > 0 else None


def weak_evidence(ratio: float | None) -> bool:
    """Under :data:`MIN_EVIDENCE_RATIO` (False without a null: the evidence floor alone judges then)."""
    return ratio is not None and not ratio >= MIN_EVIDENCE_RATIO  # NaN is weak too


def rolled_window(audio: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples of the soundtrack from sample ``start`` (a frame's start plus the roll), wrapping round its end:
    how every null reads its rolled sound (``sync_file`` and ``edge-sync eval --data`` alike)."""
    return audio[(start + np.arange(n)) % len(audio)]


def unsure_reason(confidence: float, floor: float | None, null_confidences: Sequence[float]) -> str | None:
    """Why a reading's offset cannot be trusted, as a clause ("confidence 0.010 is under ..."), or None when its
    evidence stands: under the model's evidence ``floor`` (fitted on real clips; a NaN confidence is under any
    floor), else under :data:`MIN_EVIDENCE_RATIO` times the clip's own null. The one rule ``sync``, ``score`` and
    ``fix`` apply."""
    if floor is not None and not confidence >= floor:
        return f"confidence {confidence:.3f} is under this model's evidence floor {floor:.3f} (fitted on real clips)"
    ratio = evidence_ratio(confidence, null_confidences)
    if weak_evidence(ratio):
        return (f"confidence {confidence:.3f} is only {ratio:.2f}x what this clip's sound gives against its video "
                f"out of any alignment (under {MIN_EVIDENCE_RATIO:g}x)")
    return None
