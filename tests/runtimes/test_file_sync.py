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
    assert max(calls) <= file_sync.FILE_HOP_FRAMES + 2 * engine.context_frames  # bounded per call, any clip length
