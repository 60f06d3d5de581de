"""Active speakers on a two-person clip with known turns (hold-out voices)."""
from __future__ import annotations

import numpy as np

from edge_sync.usecases.heads import heads_for
from edge_sync.usecases.speakers import detect_speakers


def _truth_for(result, clip):
    ids, p = result.speaking_matrix()
    truth = np.zeros_like(p, dtype=bool)
    for row, tid in enumerate(ids):
        x = np.mean([t.centre_x for t in result.tracks if t.track_id == tid])
        truth[row] = clip.speaking[int(np.argmin([abs(x - fx) for fx in clip.face_x]))]
    return p, truth


def test_the_speaking_face_is_found_frame_by_frame(engine, speakers_clip, speakers_synced) -> None:
    result = detect_speakers(speakers_synced, heads_for(engine.manifest))
    assert result.fitted
    p, truth = _truth_for(result, speakers_clip)
    seen = ~np.isnan(p)
    accuracy = ((p[seen] >= result.threshold) == truth[seen]).mean()
    assert accuracy > 0.8, accuracy
    assert result.turns and all(t["stop_frame"] - t["start_frame"] >= 5 for t in result.turns)


def test_without_a_head_the_evidence_still_ranks_speakers(speakers_clip, speakers_synced) -> None:
    result = detect_speakers(speakers_synced, None)
    assert not result.fitted
    p, truth = _truth_for(result, speakers_clip)
    seen = ~np.isnan(p)
    assert p[seen][truth[seen]].mean() > p[seen][~truth[seen]].mean() + 0.1


def test_json_shape(engine, speakers_synced) -> None:
    d = detect_speakers(speakers_synced, heads_for(engine.manifest)).to_dict()
    assert {"tracks", "turns", "threshold", "num_frames"} <= set(d)
    assert all(len(t["probability"]) == t["stop_frame"] - t["start_frame"] for t in d["tracks"])


def test_a_head_fitted_before_a_feature_was_added_still_reads_its_own_columns(engine, speakers_synced) -> None:
    """A heads file from an older release names fewer speaker features; it is applied to the columns it names."""
    import dataclasses

    import numpy as np

    from edge_sync.usecases.features import SPEAKER_FEATURES, judged_track, speaker_frame_features
    from edge_sync.usecases.heads import LogisticHead

    heads = heads_for(engine.manifest)
    names = ("mouth_motion", "audio_level_db")  # an older head of two features, in its own order
    old = LogisticHead(names, np.array([5.0, -30.0]), np.array([2.0, 10.0]), np.array([0.8, 0.5]), -0.2)
    result = detect_speakers(speakers_synced, dataclasses.replace(heads, heads={**heads.heads, "speakers": old}))
    assert result.fitted
    for found, track in zip(result.tracks, speakers_synced.tracks):
        feats = speaker_frame_features(speakers_synced, judged_track(speakers_synced, track)[0])
        cols = feats[:, [SPEAKER_FEATURES.index(n) for n in names]]
        expected = 1 / (1 + np.exp(-(((cols - old.mean) / old.scale) @ old.weights + old.bias)))
        np.testing.assert_allclose(found.probability[:len(expected)], expected, rtol=1e-12)
