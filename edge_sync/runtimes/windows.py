"""Which model calls cover a clip: overlapping windows whose centres stitch into the single-pass result.

An output frame depends on a bounded neighbourhood (the receptive field, ``context`` frames each side), so a
window's frames that are at least ``context`` from a cut edge equal a single pass over the whole clip. Dynamic
artifacts take windows of any length; static-shape artifacts (LiteRT buckets) take only their bucket lengths,
so windows are exactly a bucket long and a clip shorter than every bucket is padded (its last ``context``
frames are then approximate, the one case that cannot be exact). numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

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
