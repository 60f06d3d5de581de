"""Which model calls cover a clip: overlapping windows whose centres stitch into the single-pass result.

An output frame depends on a bounded neighbourhood (the receptive field, ``context`` frames each side), so a
window's frames that are at least ``context`` from a cut edge equal a single pass over the whole clip. Dynamic
artifacts take windows of any length; static-shape artifacts (LiteRT buckets) take only their bucket lengths,
so windows are exactly a bucket long and a clip shorter than every bucket is padded (its last ``context``
frames are then approximate, the one case that cannot be exact). numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edge_sync.errors import EdgeSyncError


@dataclass(frozen=True)
class Window:
    """One model call over frames [start, stop) (``stop`` may pass the clip end: padded), of which frames
    [keep_start, keep_stop) (clip indices) are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_windows(frames: int, window: int, context: int, buckets: tuple[int, ...] = ()) -> list[Window]:
    """Windows covering ``frames`` frames: each kept frame exactly once, in order."""
    if frames < 1:
        raise EdgeSyncError("a clip needs at least one frame")
    if not buckets:
        return [Window(max(0, lo - context), min(frames, hi + context), lo, hi)
                for lo, hi in ((lo, min(frames, lo + window)) for lo in range(0, frames, window))]
    fitting = [b for b in sorted(buckets) if b >= frames]
    if fitting:
        return [Window(0, fitting[0], 0, frames)]
    size = max(buckets)
    step = size - 2 * context
    if step < 1:
        raise EdgeSyncError(f"the artifact's longest time bucket ({size} frames) is too short for its receptive "
                            f"field ({context} frames each side); re-export with a longer bucket")
    starts = list(range(0, frames - size, step)) + [frames - size]
    out, kept = [], 0
    for i, start in enumerate(starts):
        keep_stop = frames if i == len(starts) - 1 else start + size - context
        out.append(Window(start, start + size, kept, keep_stop))
        kept = keep_stop
    return out


def run_windows(run: Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray]], audio: np.ndarray,
                video_window: Callable[[int, int], np.ndarray], frames: int, window: int, context: int,
                buckets: tuple[int, ...] = (), what: str = "the model",
                error: type[Exception] = EdgeSyncError) -> tuple[np.ndarray, ...]:
    """Run ``run(audio, video) -> (probs, correlation, ...)`` over :func:`plan_windows` and stitch the kept frames
    of every output ([B, C, T] each, time last): probs and correlation [2K+1, frames] of one clip, then any
    further per-frame outputs (an artifact's embeddings, [D, frames]). ``video_window(lo, hi)`` gives frames
    lo..hi-1 as model input, so a caller normalises crops one window at a time. Windows past a short clip's end
    (static shapes) are padded by repeating the edge; a model that loses frames raises ``error``."""
    steps = audio.shape[-1] // frames
    parts: list[list[np.ndarray]] = []
    for w in plan_windows(frames, window, context, buckets):
        stop = min(w.stop, frames)
        a = np.ascontiguousarray(audio[..., w.start * steps:stop * steps])
        v = video_window(w.start, stop)
        if w.stop > frames:
            pad = w.stop - frames
            a = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad * steps)], mode="edge")
            v = np.pad(v, [(0, 0), (0, 0), (0, pad), (0, 0), (0, 0)], mode="edge")
        outputs = run(a, v)
        if any(o.shape[-1] != w.length for o in outputs):
            raise error(f"{what} returned {[o.shape[-1] for o in outputs]} frames for {w.length}: it does not keep "
                        "time as the contract says")
        parts = parts or [[] for _ in outputs]
        for kept, o in zip(parts, outputs):
            kept.append(o[0, :, w.keep_start - w.start:w.keep_stop - w.start])
    return tuple(np.concatenate(kept, axis=1) for kept in parts)
