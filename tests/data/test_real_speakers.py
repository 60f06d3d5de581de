"""Two real people side by side heard in turns: the truth the speaker head is fitted and judged on."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.data.real_speakers import PAUSE_S, TURN_S, make_real_speakers_clip, turn_schedule
from edge_sync.spec import SAMPLES_PER_FRAME, VIDEO_FPS


@pytest.mark.parametrize("seed", range(5))
def test_turns_alternate_with_pauses_and_some_overlap(seed) -> None:
    speaking = turn_schedule(500, np.random.default_rng(seed))
    assert speaking.shape == (2, 500) and speaking.dtype == bool
    assert speaking[0].any() and speaking[1].any()
    starts = [(int(np.flatnonzero(np.diff(row.astype(int)) == 1)[0]) + 1) if not row[0] else 0 for row in speaking]
    assert min(starts) <= PAUSE_S[1] * VIDEO_FPS  # the first turn starts after a short pause
    heard = speaking.any(axis=0)
    assert 0.5 < heard.mean() < 1.0  # pauses between turns
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, speaking[0].astype(int), 0])))[::2]
    assert runs[:-1].min() >= int(TURN_S[0] * VIDEO_FPS)  # whole turns (the last one may be cut by the end)


def test_a_real_speakers_clip_hears_each_side_in_its_turn(tmp_path) -> None:
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.features.media import iter_frames, read_audio

    left = make_talking_photo_clip(tmp_path / "a.mp4", "Every morning the baker opens the shop and lights the oven.",
                                   size=(320, 240), seed=1)
    right = make_talking_photo_clip(tmp_path / "b.mp4", "Seven quiet ships drift slowly past the harbour wall.",
                                    size=(160, 240), seed=2)
    clip = make_real_speakers_clip(tmp_path / "pair.mp4", left.path, right.path, seed=0)
    frames = np.stack(list(iter_frames(clip.path)))
    assert frames.shape[1:] == (240, 640, 3) and clip.face_x == (160.0, 480.0)  # two equal sides, 4:3 each
    assert frames[:, :, 320:320 + 80].max() < 20  # the narrow right clip is padded, centred: black at its left
    assert clip.frames == frames.shape[0] == min(left.frames, right.frames) == clip.speaking.shape[1]
    sound, own = read_audio(clip.path), [read_audio(p) for p in (left.path, right.path)]
    for side in (0, 1):  # frames where only this side is heard carry its own sound at the same instant
        alone = np.flatnonzero(clip.speaking[side] & ~clip.speaking[1 - side])[5:-5]
        idx = (alone[:, None] * SAMPLES_PER_FRAME + np.arange(SAMPLES_PER_FRAME)).ravel()
        idx = idx[idx < min(len(sound), len(own[side]))]
        assert np.corrcoef(sound[idx], own[side][idx])[0, 1] > 0.9
    nobody = np.flatnonzero(~clip.speaking.any(axis=0))[2:-2]
    if len(nobody):
        quiet = (nobody[:, None] * SAMPLES_PER_FRAME + np.arange(SAMPLES_PER_FRAME)).ravel()
        assert np.abs(sound[quiet[quiet < len(sound)]]).max() < 0.05  # a pause is silent
