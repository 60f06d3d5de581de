"""Use-case features on real analysed clips: each manipulation moves the feature meant to catch it."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.usecases.features import SPEAKER_FEATURES, desync_features, smooth, speaker_frame_features


def test_smooth_keeps_levels_at_the_edges() -> None:
    np.testing.assert_allclose(smooth(np.full(9, 3.0), 2), 3.0)
    np.testing.assert_allclose(smooth(np.array([0, 0, 3.0, 0, 0]), 1), [0, 1, 1, 1, 0])


def test_smooth_keeps_the_length_of_a_series_shorter_than_its_window() -> None:
    """A 5-14 frame track (sync_file keeps tracks from 5 frames) under the 15-frame speaker window: numpy's "same"
    convolution returned 15 values and speaker features failed to stack."""
    x = np.arange(8.0)
    np.testing.assert_allclose(smooth(x, 7), np.full(8, x.mean()))
    np.testing.assert_allclose(smooth(x, 2)[:2], [1.0, 1.5])


def test_each_manipulation_moves_its_feature(desync_clips, desync_synced) -> None:
    f = {k: desync_features(s, s.main) for k, s in desync_synced.items()}
    assert f["shifted"]["abs_offset"] == pytest.approx(abs(desync_clips["shifted"].offset_frames), abs=1)
    assert f["genuine"]["abs_offset"] <= 1
    assert f["drifting"]["window_offset_range"] > f["genuine"]["window_offset_range"]
    assert f["frozen"]["motion_speech_ratio"] < f["genuine"]["motion_speech_ratio"]
    assert f["swapped"]["lse_c"] < f["genuine"]["lse_c"]


def test_speaker_features_cover_each_tracked_frame(speakers_synced) -> None:
    assert len(speakers_synced.tracks) >= 2  # both faces are tracked
    for track in speakers_synced.tracks:
        feats = speaker_frame_features(speakers_synced, track)
        assert feats.shape == (track.result.frames, len(SPEAKER_FEATURES)) and np.isfinite(feats).all()


def test_a_face_alone_is_judged_on_its_own_evidence_and_two_faces_against_each_other(speakers_synced) -> None:
    import dataclasses

    col = SPEAKER_FEATURES.index("contrast_over_others")
    own = SPEAKER_FEATURES.index("corr_contrast_0")
    first, second = speakers_synced.tracks[:2]
    alone = dataclasses.replace(speakers_synced, tracks=[first])
    feats = speaker_frame_features(alone, first)
    assert np.array_equal(feats[:, col], feats[:, own])  # nobody else on screen: its own contrast
    together = speaker_frame_features(speakers_synced, first)
    lo, hi = max(first.start_frame, second.start_frame), min(first.stop_frame, second.stop_frame)
    assert hi > lo  # both faces on screen for a while
    other = speaker_frame_features(speakers_synced, second)[lo - second.start_frame:hi - second.start_frame, own]
    span = slice(lo - first.start_frame, hi - first.start_frame)
    if len(speakers_synced.tracks) == 2:
        np.testing.assert_allclose(together[span, col], together[span, own] - other)
    assert (together[span, col] <= together[span, own] - other + 1e-12).all()


def test_a_face_whose_sound_is_a_few_frames_off_still_shows_its_evidence_at_its_best_offset() -> None:
    """Evidence peaked 2 frames from 0 (a clip published 80 ms off): the offset-0 columns miss it, the best-offset
    columns find it; past SPEAKER_BEST_OFFSET the peak is not taken for the face's own."""
    from edge_sync.runtimes.api import FileSync, TrackSync
    from edge_sync.runtimes.result import SyncResult
    from edge_sync.usecases.features import SPEAKER_BEST_OFFSET

    k, frames = 15, 60
    for shift, found in ((2, True), (SPEAKER_BEST_OFFSET + 3, False)):
        probs = np.full((2 * k + 1, frames), 0.01)
        probs[k + shift] = 0.7
        probs /= probs.sum(axis=0)
        corr = np.zeros((2 * k + 1, frames))
        corr[k + shift] = 0.5
        track = TrackSync(0, 0, SyncResult.from_outputs(probs.astype(np.float32), corr.astype(np.float32)))
        feats = speaker_frame_features(FileSync("x.mp4", frames, [track]), track)
        col = {name: feats[:, i] for i, name in enumerate(SPEAKER_FEATURES)}
        assert col["sync_prob_near_0"].max() < 0.1 and col["corr_contrast_0"].max() < 0.01
        best_found = col["sync_prob_near_best"].min() > 0.6 and col["corr_contrast_best"].min() > 0.4
        assert best_found == found
        np.testing.assert_array_equal(col["contrast_best_over_others"], col["corr_contrast_best"])  # alone
