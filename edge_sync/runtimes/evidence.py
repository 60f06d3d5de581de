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
soundtrack (or, for the embedding null, a segment) under 3.04 s (2 (2K + margin) frames) is too short for those
rolls: a soundtrack of 1.52-3.04 s draws its rolls nearer, around its reading (``short=True``: the reading's
alignment just outside the offsets read, :data:`SHORT_NULL_MARGIN_FRAMES`; a streamed null, which starts before the
reading is known, places them as if in sync), and one under 1.52 s has no null at all: its reading is unsure
whatever its confidence (:data:`TOO_SHORT`). Why (session 29, ``benchmarks/short_clips.py``: 1-3 s cuts of the
in-sync hold-out clips, as cut and with their sound moved by +-6 and +-10 frames, bundled INT8 student): with no
null nothing flagged the 1 s cuts, which read right about half the time, at higher confidence than whole clips;
the near rolls flag all 20 wrong answers on 3 s cuts and none of the 40 right ones, 15 of 18 wrong and 7 of 72
right on 2 s cuts, 22 of 24 wrong and 21 of 66 right on 1.5 s cuts. numpy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_sync.runtimes.result import curve_confidence, distance_curve

NULL_MARGIN_FRAMES = 8  # how far (frames) a rolled copy's nearest alignment stays outside the offsets read
NULL_ROLLS = 3  # rolled copies per clip: their median is the null
MIN_EVIDENCE_RATIO = 1.5  # a reading's confidence must be this many times the null's (fixed on the hold-out)
# a soundtrack too short for the rolls above: rolls keep the reading's alignment this many frames outside -K..K
# (fixed on 1.5-3 s cuts of the hold-out clips in session 29; see the module doc)
SHORT_NULL_MARGIN_FRAMES = 3
TOO_SHORT = "too short for an evidence check"  # how unsure_reason's clause for a soundtrack without a null begins


def null_rolls(frames: int, max_offset: int, short: bool = False, reading: int = 0) -> list[int]:
    """Rolls R (frames; frame t then hears frame t + R) for a soundtrack of ``frames`` frames: spread over
    [2K + margin, frames - 2K - margin], so neither a roll nor its wrap brings any alignment within K + margin of
    the offsets -K..K; none when the soundtrack is shorter than 2 (2K + margin) frames (3.04 s for K = 15).
    ``short`` (a soundtrack under that, see :func:`short_soundtrack`): too short to keep every alignment out, so the
    rolls keep the *reading's* out: the alignment at offset ``reading`` lands at ``reading - R`` (or that plus
    ``frames``), just outside the offsets read, for R in [reading + K + 1 + m, reading + frames - K - 1 - m] with
    m = :data:`SHORT_NULL_MARGIN_FRAMES`; none under 2 (K + 1 + m) frames (1.52 s). Why the reading: a short clip
    really 10 frames late rolled as if it were in sync brings its own alignment back within reach, and its null
    then equals its reading. Where the reading is wrong, the true alignment may come within reach and raise the
    null: more UNSURE, never less."""
    if short:
        lo = reading + max_offset + 1 + SHORT_NULL_MARGIN_FRAMES
        hi = reading + frames - (max_offset + 1 + SHORT_NULL_MARGIN_FRAMES)
    else:
        lo = 2 * max_offset + NULL_MARGIN_FRAMES
        hi = frames - lo
    if hi < lo or (not short and frames < 2 * lo):
        return []
    return sorted({lo + j * (hi - lo) // (NULL_ROLLS - 1) for j in range(NULL_ROLLS)})


def short_soundtrack(frames: int, max_offset: int) -> bool:
    """A soundtrack of ``frames`` frames is too short for the null's usual rolls: it draws them nearer."""
    return not null_rolls(frames, max_offset)


def soundtrack_null_rolls(frames: int, max_offset: int) -> list[int]:
    """The rolls of a soundtrack of ``frames`` frames: the usual ones, else the near ones; none under 1.52 s."""
    return null_rolls(frames, max_offset, short=short_soundtrack(frames, max_offset))


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


def embedding_nulls(audio_emb: np.ndarray, video_emb: np.ndarray, max_offset: int,
                    short: bool = False, reading: int = 0) -> list[float]:
    """The null's confidences read off a segment's own embeddings [D, T]: the audio embeddings rolled round the
    segment by each of :func:`null_rolls` (T, ``short``)'s rolls, against the video's. Why: the same statistic as
    scoring the video against rolled sound, without running the model again; which rolls are drawn moves a few
    borderline cases either way (``scripts/embedding_null_check.py``, docs/real_footage.md session 28). The roll
    wraps round the segment, not the soundtrack, so a segment under 3.04 s of a longer soundtrack has none
    (``sync_file`` streams its null then); ``short``: the near rolls of a short soundtrack's segments, placed
    around the segment's ``reading`` (its offset)."""
    rolls = null_rolls(video_emb.shape[1], max_offset, short, reading)
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


def unsure_reason(confidence: float, floor: float | None, null_confidences: Sequence[float],
                  too_short: bool = False) -> str | None:
    """Why a reading's offset cannot be trusted, as a clause ("confidence 0.010 is under ..."), or None when its
    evidence stands: under the model's evidence ``floor`` (fitted on real clips; a NaN confidence is under any
    floor), else ``too_short`` (a null was asked for, but the soundtrack is under 1.52 s: no roll keeps the true
    alignment out of the offsets read), else under :data:`MIN_EVIDENCE_RATIO` times the clip's own null. The one
    rule ``sync``, ``score`` and ``fix`` apply."""
    if floor is not None and not confidence >= floor:
        return f"confidence {confidence:.3f} is under this model's evidence floor {floor:.3f} (fitted on real clips)"
    if too_short:
        return (f"{TOO_SHORT}: under 1.52 s of sound the reading cannot be compared with the clip's own sound out "
                "of alignment, and 1 s cuts of real in-sync clips read right about half the time")
    ratio = evidence_ratio(confidence, null_confidences)
    if weak_evidence(ratio):
        return (f"confidence {confidence:.3f} is only {ratio:.2f}x what this clip's sound gives against its video "
                f"out of any alignment (under {MIN_EVIDENCE_RATIO:g}x)")
    return None
