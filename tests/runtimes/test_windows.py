"""Window plans: every frame kept once, in order, with full context wherever the clip allows it."""
from __future__ import annotations

import pytest

from edge_sync.errors import EdgeSyncError
from edge_sync.runtimes.windows import plan_windows


def _check_cover(plan, frames, context):
    kept = [f for w in plan for f in range(w.keep_start, w.keep_stop)]
    assert kept == list(range(frames))
    for w in plan:
        assert w.start <= w.keep_start < w.keep_stop <= min(w.stop, frames)
        assert w.keep_start - w.start >= context or w.start == 0  # left context, unless at the clip start
        assert w.stop - w.keep_stop >= context or w.stop >= frames  # right context, unless at the clip end


@pytest.mark.parametrize("frames", [1, 47, 250, 251, 999, 1000, 1001])
def test_dynamic_windows_cover_each_frame_once_with_context(frames):
    plan = plan_windows(frames, window=250, context=48)
    _check_cover(plan, frames, 48)
    assert all(w.stop <= frames for w in plan)
    assert len(plan) == -(-frames // 250)


@pytest.mark.parametrize("frames", [251, 300, 404, 405, 406, 1000, 1237])
def test_bucket_windows_are_exactly_a_bucket_long(frames):
    plan = plan_windows(frames, window=250, context=48, buckets=(50, 250))
    _check_cover(plan, frames, 48)
    assert all(w.length == 250 and w.stop <= frames for w in plan)


@pytest.mark.parametrize(("frames", "bucket"), [(1, 50), (50, 50), (51, 250), (250, 250)])
def test_short_clips_use_the_smallest_bucket_that_fits(frames, bucket):
    (w,) = plan_windows(frames, window=250, context=48, buckets=(250, 50))
    assert (w.start, w.stop, w.keep_start, w.keep_stop) == (0, bucket, 0, frames)


def test_bucket_too_short_for_the_receptive_field_is_refused():
    with pytest.raises(EdgeSyncError, match="too short for its receptive field"):
        plan_windows(500, window=250, context=48, buckets=(64,))
    with pytest.raises(EdgeSyncError, match="at least one frame"):
        plan_windows(0, window=250, context=48)


def test_every_output_is_stitched_from_the_windows_kept_frames():
    """A model of any number of per-frame outputs (probs, correlation, embeddings): each is stitched alike, and a
    window whose outputs lose frames is refused."""
    import numpy as np

    from edge_sync.runtimes.windows import run_windows

    frames, steps = 140, 4
    audio = np.arange(frames * steps, dtype=np.float32).reshape(1, 1, 1, -1)
    video = np.arange(frames, dtype=np.float32).reshape(1, 1, frames, 1, 1)

    def model(a, v):  # output c at frame t: the window's frame index (from the video) times c + 1
        t = v[0, 0, :, 0, 0]
        return tuple(np.stack([t * (c + 1)] * rows)[None] for c, rows in enumerate((3, 3, 5)))

    outputs = run_windows(model, audio, lambda lo, hi: video[:, :, lo:hi], frames, window=50, context=10)
    assert [o.shape for o in outputs] == [(3, frames), (3, frames), (5, frames)]
    for c, o in enumerate(outputs):
        assert (o == np.arange(frames) * (c + 1)).all()
    with pytest.raises(EdgeSyncError, match="does not keep time"):
        run_windows(lambda a, v: (*model(a, v)[:2], model(a, v)[2][..., :-1]), audio,
                    lambda lo, hi: video[:, :, lo:hi], frames, window=50, context=10)
