"""Sync-quality metrics on numpy arrays: per-frame, per-clip and the LRS2 context-window protocol.

numpy only (no torch import) because the runtimes, parity checks and evaluation scripts on devices use
the same numbers as training. Conventions follow :mod:`edge_sync.spec`: score/probability arrays are
``[2K+1, T]`` (or ``[B, 2K+1, T]``), class index ``i`` <-> offset ``i - K``, ``k > 0`` = sound late.
Ties in an argmax go to the lowest class index (the most negative offset), as numpy does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "PUBLISHED_LRS2_CONTEXT",
    "DEFAULT_CONTEXTS",
    "predicted_offsets",
    "frame_metrics",
    "clip_offset",
    "clip_metrics",
    "ContextResult",
    "full_search_starts",
    "window_truths",
    "window_hits",
    "context_evaluation",
    "context_accuracy",
    "metrics_table_markdown",
    "context_table_markdown",
]

DEFAULT_CONTEXTS: tuple[int, ...] = (5, 7, 9, 11, 13, 15)

# Published LRS2 sync accuracies (fraction correct within +-1 frame, offsets searched over -15..15) for
# the context-window protocol of :func:`context_accuracy`. Only the values stated in the literature we
# rely on are listed; other context lengths are unknown here and render as '—'.
PUBLISHED_LRS2_CONTEXT: dict[str, dict[int, float]] = {
    "SyncNet (original, published)": {5: 0.758, 15: 0.961},
    "best published models (approx.)": {5: 0.92, 15: 0.998},
}


def _num_classes_to_k(num_classes: int) -> int:
    if num_classes < 1 or num_classes % 2 == 0:
        raise ValueError(f"the offset axis must have 2K+1 (odd) entries, got {num_classes}")
    return (num_classes - 1) // 2


def predicted_offsets(probs: np.ndarray) -> np.ndarray:
    """Per-frame offsets ``argmax - K`` from [2K+1, T] -> [T] or [B, 2K+1, T] -> [B, T] (int64).

    Works for any "higher is better" score (probabilities, logits, correlations, -distances).
    """
    probs = np.asarray(probs)
    if probs.ndim not in (2, 3):
        raise ValueError(f"probs must be [2K+1, T] or [B, 2K+1, T], got shape {probs.shape}")
    k = _num_classes_to_k(probs.shape[-2])
    return (np.argmax(probs, axis=-2) - k).astype(np.int64)


def _as_batch(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        return x[None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [T] or [B, T], got shape {x.shape}")
    return x


def frame_metrics(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Per-frame agreement of predicted and true offsets ([T] or [B, T]), over valid frames.

    Returns ``accuracy`` (exact), ``accuracy_pm1`` (|err| <= 1 frame = 40 ms, the usual sync tolerance),
    ``mae_frames``, ``temporal_consistency`` and ``n_frames``. Consistency is ``1 / (1 + m)`` with ``m``
    the mean |pred[t+1] - pred[t]| over adjacent frames that are both valid, computed per clip and then
    averaged over the clips that have such a pair: 1 means a steady prediction, a 1-frame jump at every
    step gives 0.5. Values are NaN where nothing is there to measure.
    """
    p = _as_batch(pred, "pred").astype(np.int64)
    y = _as_batch(truth, "truth").astype(np.int64)
    if p.shape != y.shape:
        raise ValueError(f"pred {p.shape} and truth {y.shape} must have the same shape")
    mask = np.ones(p.shape, bool) if valid is None else _as_batch(valid, "valid").astype(bool)
    if mask.shape != p.shape:
        raise ValueError(f"valid {mask.shape} must match pred {p.shape}")
    err = np.abs(p - y)[mask]
    n = int(err.size)
    out = {
        "accuracy": float(np.mean(err == 0)) if n else math.nan,
        "accuracy_pm1": float(np.mean(err <= 1)) if n else math.nan,
        "mae_frames": float(np.mean(err)) if n else math.nan,
        "temporal_consistency": math.nan,
        "n_frames": n,
    }
    per_clip = []
    for clip_pred, clip_mask in zip(p, mask):
        pairs = clip_mask[:-1] & clip_mask[1:]
        if pairs.any():
            jumps = np.abs(np.diff(clip_pred))[pairs]
            per_clip.append(1.0 / (1.0 + float(np.mean(jumps))))
    if per_clip:
        out["temporal_consistency"] = float(np.mean(per_clip))
    return out


def clip_offset(probs: np.ndarray, valid: np.ndarray | None = None) -> int:
    """Clip offset = argmax of the frame-averaged distribution - K (over valid frames if given).

    Averaging distributions before the argmax (rather than voting per-frame argmaxes) lets frames that
    are unsure still contribute their ranking; it is the clip rule of the spec and of syncnet_python.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [2K+1, T], got shape {probs.shape}")
    k = _num_classes_to_k(probs.shape[0])
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (probs.shape[1],):
            raise ValueError(f"valid must be [T] = ({probs.shape[1]},), got {valid.shape}")
        if not valid.any():
            raise ValueError("clip has no valid frame to average")
        probs = probs[:, valid]
    if probs.shape[1] == 0:
        raise ValueError("clip has no frames")
    return int(np.argmax(probs.mean(axis=1))) - k


def clip_metrics(probs_per_clip: Sequence[np.ndarray], truth_offsets: Sequence[int],
                 valid_per_clip: Sequence[np.ndarray | None] | None = None) -> dict[str, float]:
    """Clip-level accuracy (exact), accuracy_pm1, mae (frames) and n_clips, using :func:`clip_offset`."""
    if len(probs_per_clip) != len(truth_offsets):
        raise ValueError(f"{len(probs_per_clip)} clips but {len(truth_offsets)} true offsets")
    valids = valid_per_clip if valid_per_clip is not None else [None] * len(probs_per_clip)
    if len(valids) != len(probs_per_clip):
        raise ValueError(f"{len(probs_per_clip)} clips but {len(valids)} valid masks")
    if not probs_per_clip:
        return {"accuracy": math.nan, "accuracy_pm1": math.nan, "mae": math.nan, "n_clips": 0}
    pred = np.array([clip_offset(p, v) for p, v in zip(probs_per_clip, valids)], np.int64)
    err = np.abs(pred - np.asarray(truth_offsets, np.int64))
    return {"accuracy": float(np.mean(err == 0)), "accuracy_pm1": float(np.mean(err <= 1)),
            "mae": float(np.mean(err)), "n_clips": int(len(err))}


# --- the LRS2 context-window protocol ------------------------------------------------------------
@dataclass(frozen=True)
class ContextResult:
    """Outcome for one context length: windows evaluated and how many were within tolerance."""

    context: int
    windows: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.windows if self.windows else math.nan


def _clip_truth(truth: int | np.ndarray, frames: int) -> np.ndarray:
    y = np.asarray(truth)
    if y.ndim == 0:
        return np.full(frames, int(y), np.int64)
    if y.shape != (frames,):
        raise ValueError(f"per-frame truth must be [T] = ({frames},), got {y.shape}")
    return y.astype(np.int64)


def full_search_starts(frames: int, context: int, max_offset: int, stride: int = 1,
                       full_search: bool = True) -> np.ndarray:
    """Start frames of the c-frame windows that are scored in a clip of ``frames`` frames.

    With ``full_search`` only windows whose audio exists at every candidate offset: frames s..s+c-1 compared
    with audio frames s-K..s+c-1+K, all inside the clip. Near the clip's ends some candidates (the true one
    too, for large offsets) would compare with padding, so those windows test the padding, not the model:
    in 50-frame clips with offsets -15..15 about 17% of 5-frame windows lack some of their true audio (the
    bundled teacher got 36% of those right, against 98% of the rest).
    """
    margin = max_offset if full_search else 0
    return np.arange(margin, frames - context - margin + 1, stride)


def window_truths(truth: np.ndarray, starts: np.ndarray, context: int) -> np.ndarray:
    """Each window's true offset: the median of its frames' offsets (drifting clips change within a window)."""
    return np.median(np.lib.stride_tricks.sliding_window_view(truth, context)[starts], axis=1)


def window_hits(window_scores: np.ndarray, truth: np.ndarray, tolerance: int = 1) -> int:
    """How many windows (scores [W, 2K+1], higher = better) have their argmax within ``tolerance`` of truth [W]."""
    k = _num_classes_to_k(window_scores.shape[1])
    return int(np.sum(np.abs(np.argmax(window_scores, axis=1) - k - truth) <= tolerance))


def context_evaluation(scores_per_clip: Sequence[np.ndarray], truth_per_clip: Sequence[int | np.ndarray],
                       contexts: Iterable[int] = DEFAULT_CONTEXTS, tolerance: int = 1,
                       stride: int = 1, full_search: bool = True) -> dict[int, ContextResult]:
    """Window counts and hits behind :func:`context_accuracy` (same arguments), per context length."""
    contexts = tuple(int(c) for c in contexts)
    if any(c < 1 for c in contexts):
        raise ValueError(f"context lengths must be >= 1, got {contexts}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if len(scores_per_clip) != len(truth_per_clip):
        raise ValueError(f"{len(scores_per_clip)} clips but {len(truth_per_clip)} truths")
    windows = dict.fromkeys(contexts, 0)
    correct = dict.fromkeys(contexts, 0)
    for scores, truth in zip(scores_per_clip, truth_per_clip):
        s = np.asarray(scores, np.float64)
        if s.ndim != 2:
            raise ValueError(f"each clip's scores must be [2K+1, T], got shape {s.shape}")
        k = _num_classes_to_k(s.shape[0])
        frames = s.shape[1]
        y = _clip_truth(truth, frames)
        # window sums from a running sum: O(T) per context instead of O(T c)
        csum = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(s, axis=1)], axis=1)
        for c in contexts:
            starts = full_search_starts(frames, c, k, stride, full_search)
            if not starts.size:
                continue
            window_scores = csum[:, starts + c] - csum[:, starts]  # sum, same argmax as the mean
            windows[c] += int(starts.size)
            correct[c] += window_hits(window_scores.T, window_truths(y, starts, c), tolerance)
    return {c: ContextResult(c, windows[c], correct[c]) for c in contexts}


def context_accuracy(scores_per_clip: Sequence[np.ndarray], truth_per_clip: Sequence[int | np.ndarray],
                     contexts: Iterable[int] = DEFAULT_CONTEXTS, tolerance: int = 1,
                     stride: int = 1, full_search: bool = True) -> dict[int, float]:
    """Sync accuracy at several context lengths, as published for LRS2 (SyncNet, Perfect Match).

    For each clip (scores [2K+1, T], higher = better: probabilities, correlations or -distances) and
    each context length c, every window of c consecutive frames (starts stride apart, see
    :func:`full_search_starts`) is scored by averaging the per-frame scores over the window and taking the
    argmax offset in -K..K; it is correct if it is within ``tolerance`` frames of the window's truth (the
    median of the per-frame truth, or the clip's single offset). Accuracy is correct windows / all windows
    over all clips; clips too short for a window add none, and a context with no window at all is NaN.

    ``full_search`` (the default, as in the published protocol, where every window is searched over real
    audio at all 2K+1 offsets) keeps only windows at least K frames from both ends of the clip;
    ``full_search=False`` scores every window, the clip's ends included.

    Why this form: it is the protocol the literature reports on LRS2 (offsets -15..15, +-1 frame
    tolerance), so numbers are comparable with :data:`PUBLISHED_LRS2_CONTEXT`: the original SyncNet
    reaches 75.8% with 5 frames and 96.1% with 15; the best published models about 92% at 5 and
    99.8% at 15. Longer contexts are easier because averaging suppresses per-frame ambiguity.
    """
    results = context_evaluation(scores_per_clip, truth_per_clip, contexts, tolerance, stride, full_search)
    return {c: r.accuracy for c, r in results.items()}


# --- Markdown rendering ------------------------------------------------------------------------------
_DASH = "—"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(key: str, value: object, digits: int) -> str:
    if _is_missing(value):
        return _DASH
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if key.startswith("accuracy"):
            return f"{100.0 * float(value):.{max(digits - 2, 0)}f}%"
        return f"{float(value):.{digits}f}"
    return str(value)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def metrics_table_markdown(rows: Mapping[str, Mapping[str, object]], columns: Sequence[str] | None = None,
                           digits: int = 3, name_header: str = "model") -> str:
    """A Markdown table with one row per name; columns default to every metric key, in first-seen order.

    Keys starting with ``accuracy`` print as percentages; missing or NaN cells print as '—'.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for metrics in rows.values() for key in metrics))
    body = [[name] + [_fmt(c, metrics.get(c), digits) for c in columns] for name, metrics in rows.items()]
    return _table([name_header, *columns], body)


def context_table_markdown(rows: Mapping[str, Mapping[int, float]], include_published: bool = True,
                           contexts: Sequence[int] | None = None, digits: int = 1) -> str:
    """Context-accuracy table (columns = context lengths in frames, cells = percent).

    With ``include_published`` the published LRS2 reference lines of :data:`PUBLISHED_LRS2_CONTEXT`
    follow the measured rows, marked as references; their unknown context lengths show '—'. Note that
    the published numbers are on LRS2, so they compare with rows measured on LRS2 only.
    """
    all_rows: dict[str, Mapping[int, float]] = dict(rows)
    if include_published:
        for name, values in PUBLISHED_LRS2_CONTEXT.items():
            all_rows[f"{name} [LRS2 reference]"] = values
    if contexts is None:
        found = {int(c) for values in all_rows.values() for c in values}
        contexts = sorted(found) if found else list(DEFAULT_CONTEXTS)
    body = []
    for name, values in all_rows.items():
        cells = []
        for c in contexts:
            v = values.get(c)
            cells.append(_DASH if _is_missing(v) else f"{100.0 * float(v):.{digits}f}%")
        body.append([name, *cells])
    return _table(["model", *[f"{c} frames" for c in contexts]], body)
