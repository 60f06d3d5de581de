"""sync_file streams crops into bounded windows and still equals the prepared-clip path, segment by segment."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")

from edge_sync.data.talking_photo import make_talking_photo_clip, write_video  # noqa: E402
from edge_sync.features.clip import prepare_clip  # noqa: E402
from edge_sync.features.media import iter_frames, read_audio  # noqa: E402
from edge_sync.runtimes import file_sync  # noqa: E402
from edge_sync.runtimes.api import load  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    return load()


@pytest.fixture(scope="module")
def gap_clip(tmp_path_factory):
    """A talking face that leaves the picture for 40 frames: two segments of one track, or two tracks."""
    root = tmp_path_factory.mktemp("gap")
    talk = make_talking_photo_clip(root / "talk.mp4", "The face goes away for a moment and then it comes back "
                                   "to finish the sentence.", offset_frames=-3, size=(320, 240), seed=5)
    frames = np.stack(list(iter_frames(talk.path)))
    frames[80:120] = 128  # no face here
    return write_video(root / "gap.mp4", frames, read_audio(talk.path))


def test_streamed_file_equals_prepared_segments(engine, gap_clip):
    streamed = engine.sync_file(gap_clip)
    prepared = prepare_clip(gap_clip, preprocessing=engine.contract.video)
    offline = [(s.track_id, s.start, engine.run_segment(s)) for s in prepared.segments]
    assert len(offline) >= 2  # the gap really splits the face's frames
    assert [(t.track_id, t.start_frame, t.result.frames) for t in streamed.tracks] == \
        [(tid, start, r.frames) for tid, start, r in offline]
    for t, (_, _, r) in zip(streamed.tracks, offline):
        np.testing.assert_allclose(t.result.frame_probs, r.frame_probs, atol=1e-5)
        assert t.result.offset_frames == r.offset_frames
    assert streamed.main.result.offset_frames in (-4, -3, -2)
    assert set(range(85, 115)) <= set(streamed.frames_without_face)


def test_long_segments_are_windowed_in_small_steps(engine, gap_clip, monkeypatch):
    calls = []
    run = engine._session.run

    def spy(audio, video):
        calls.append(video.shape[2])
        return run(audio, video)

    monkeypatch.setattr(engine._session, "run", spy)
    engine.sync_file(gap_clip)
    hop = max(file_sync.FILE_HOP_FRAMES, file_sync.NULL_HOP_FRAMES)  # the clip's stream, and its null's
    assert max(calls) <= hop + 2 * engine.context_frames  # bounded per call, any clip length


def test_segments_carry_per_frame_landmark_cues_nan_where_the_tracker_interpolated(engine, gap_clip):
    sync = engine.sync_file(gap_clip)
    for t in sync.tracks:
        n, cues = t.result.frames, t.cues
        assert {"mouth_motion", "box", "detected", "landmarks", "mouth_width", "yaw", "face_size"} <= set(cues)
        assert cues["landmarks"].shape == (n, 5, 2) and cues["detected"].shape == (n,)
        det = cues["detected"]
        assert 0.15 < det.mean() < 0.5  # the detector ran on every 5th frame (more where the face came and went)
        for key in ("mouth_width", "yaw", "face_size"):
            assert cues[key].shape == (n,)
            assert np.isfinite(cues[key][det]).all() and np.isnan(cues[key][~det]).all()
        assert np.isfinite(cues["landmarks"][det]).all() and np.isnan(cues["landmarks"][~det]).all()
        # the detector's mouth corners sit on the tracked mouth line (the box cue's centre is the face's centre)
        mouth = cues["landmarks"][det][:, 3:5].mean(axis=1)
        assert np.median(np.abs(mouth[:, 0] - cues["box"][det][:, 0])) < 0.1 * np.median(cues["box"][:, 2])
        assert 0.6 < np.median(cues["mouth_width"][det]) < 1.2 and np.abs(np.median(cues["yaw"][det])) < 0.2


def test_a_decode_error_midway_stops_the_model_thread_and_is_raised(engine, gap_clip, monkeypatch):
    import threading

    from edge_sync.errors import MediaError

    def broken(path, **options):
        for i, frame in enumerate(iter_frames(path, **options)):
            if i == 70:
                raise MediaError("corrupt at frame 70")
            yield frame

    monkeypatch.setattr(file_sync, "iter_frames", broken)
    before = threading.active_count()
    with pytest.raises(MediaError, match="frame 70"):
        engine.sync_file(gap_clip)
    assert threading.active_count() == before


def test_a_model_error_in_the_stream_thread_is_raised_by_sync_file(engine, gap_clip, monkeypatch):
    def fail(audio, video):
        raise RuntimeError("backend failed")

    monkeypatch.setattr(engine._session, "run", fail)
    with pytest.raises(RuntimeError, match="backend failed"):
        engine.sync_file(gap_clip)


def test_the_models_evidence_floor_travels_with_the_result(engine, gap_clip, tmp_path, monkeypatch):
    """sync_file reads the floor fitted beside the model's heads; under it the result says UNSURE (flag, warning,
    JSON), over it nothing changes."""
    import dataclasses

    from edge_sync.usecases import heads as heads_mod

    sync = engine.sync_file(gap_clip)
    bundled = heads_mod.evidence_floor_of(engine)
    assert sync.evidence_floor == bundled is not None  # the bundled student has one fitted
    assert not sync.low_evidence and not any(w.startswith("UNSURE") for w in sync.warnings)
    strict = dataclasses.replace(heads_mod.heads_for(engine.manifest), evidence_floor=2.0)  # over any LSE-C
    monkeypatch.setattr(heads_mod, "HEADS_DIR", tmp_path)
    strict.write(heads_mod.heads_path(strict.checkpoint_sha256))
    unsure = engine.sync_file(gap_clip)
    assert unsure.offset_frames == sync.offset_frames  # the reading is the same; only the trust in it changes
    assert unsure.low_evidence and any(w.startswith("UNSURE: confidence") for w in unsure.warnings)
    as_json = unsure.to_dict(per_frame=False)
    assert as_json["low_evidence"] is True and as_json["evidence_floor"] == 2.0


def test_a_broken_heads_file_costs_the_floor_not_the_sync(engine, gap_clip, tmp_path, monkeypatch):
    from edge_sync.usecases import heads as heads_mod

    sha = engine.manifest["source"]["checkpoint_sha256"]
    monkeypatch.setattr(heads_mod, "HEADS_DIR", tmp_path)
    heads_mod.heads_path(sha).write_text("{not json")
    sync = engine.sync_file(gap_clip)
    assert sync.evidence_floor is None and not sync.low_evidence and sync.tracks


def test_a_segment_too_short_for_its_own_null_streams_it(engine, gap_clip, streamed_student):
    """With the embedding outputs, the 80-frame segment reads its null off its embeddings; the 24-frame one is too
    short for rolls of its own (76 frames) and streams it against the soundtrack, exactly as an artifact without
    the embeddings does."""
    from edge_sync.runtimes.evidence import null_rolls

    embedded, streamed = engine.sync_file(gap_clip), streamed_student.sync_file(gap_clip)
    (long, short), (long_ref, short_ref) = embedded.tracks, streamed.tracks
    assert null_rolls(long.result.frames, 15) and not null_rolls(short.result.frames, 15)
    assert len(long.null_confidences) == len(short.null_confidences) == 3
    assert short.null_confidences == short_ref.null_confidences
    assert long.null_confidences != long_ref.null_confidences


def test_a_clip_shorter_than_a_face_track_says_it_is_too_short(engine, gap_clip, tmp_path):
    """Eight frames with a face in every one: too few for the tracker to take it for a face, and the error says that,
    not that no face is visible."""
    from edge_sync.errors import NoFaceError

    frames = np.stack(list(iter_frames(gap_clip)))[:8]
    short = write_video(tmp_path / "eight.mp4", frames, read_audio(gap_clip)[:8 * 640])
    with pytest.raises(NoFaceError, match="too short: 8 frames, and a face must be tracked for 10"):
        engine.sync_file(short)
