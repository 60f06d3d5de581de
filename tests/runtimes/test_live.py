"""LiveSyncer: a video file played as camera + lagging microphone gives sync_file's results, one face followed."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.runtimes.api import load  # noqa: E402
from edge_sync.runtimes.live import LiveSyncer, MicrophoneLagError  # noqa: E402
from edge_sync.spec import SAMPLES_PER_FRAME  # noqa: E402

PLANTED = 3


@pytest.fixture(scope="module")
def engine():
    return load()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); scripts/setup.sh installs it")
    from edge_sync.data.talking_photo import make_talking_photo_clip

    return make_talking_photo_clip(tmp_path_factory.mktemp("live") / "talk.mp4",
                                   "Seven wizards judge the boxing match at noon.", offset_frames=PLANTED, seed=11,
                                   size=(320, 240))


def _play(engine, path, mic_lag: int, chunk: int = 1000, **options):
    """Frames one at a time through the face tracker; the microphone's samples arrive in ``chunk``-sample
    pieces, ``mic_lag`` frames behind the camera."""
    from edge_sync.features.faces import FaceTracker
    from edge_sync.features.media import iter_frames, read_audio

    audio = read_audio(path)
    live = LiveSyncer(engine, **options)
    tracker = FaceTracker(detect_every=5, crops=(live.crop,))  # the default detector, as sync_file uses
    got, sent = [], 0
    for n, frame in enumerate(iter_frames(path)):
        got += live.push_faces(tracker.push(frame))
        while sent < min(len(audio), max(0, n - mic_lag) * SAMPLES_PER_FRAME):
            got += live.push_audio(audio[sent:sent + chunk])
            sent += chunk
    got += live.push_faces(tracker.finish())
    got += live.push_audio(audio[sent:])
    got += live.finish()
    return live, got


def test_a_lagging_microphone_gives_the_offline_result(engine, clip):
    offline = engine.sync_file(clip.path)
    live, got = _play(engine, clip.path, mic_lag=30)
    assert [s.start for s in live.segments] == [t.start_frame for t in offline.tracks]
    seg, ref = live.result(), offline.main
    assert seg.result.offset_frames == ref.result.offset_frames == PLANTED
    np.testing.assert_allclose(seg.result.frame_probs, ref.result.frame_probs, atol=2e-5)
    # the evidence null sync_file measures, read off the same embeddings: the same verdict
    assert len(seg.null_confidences) == 3
    np.testing.assert_allclose(seg.null_confidences, ref.null_confidences, rtol=2e-3)
    assert seg.evidence_ratio == pytest.approx(ref.evidence_ratio, rel=2e-3)
    assert seg.evidence_floor == offline.evidence_floor and (seg.unsure_reason is None) == (not offline.low_evidence)
    frames = [f.frame for f in got]
    assert frames == sorted(frames) and len(frames) == sum(t.result.frames for t in offline.tracks)
    assert live._audio.size < 250 * SAMPLES_PER_FRAME  # bounded: samples no frame needs are dropped


def test_keep_frames_rolls_and_a_silent_microphone_is_reported(engine, clip):
    live, _ = _play(engine, clip.path, mic_lag=0, keep_frames=40)
    assert live.result().result.frames == 40
    # 40 frames: under 76, so a null from rolls drawn nearer (as for a 1.6 s soundtrack)
    assert len(live.result().null_confidences) == 3 and live.result().evidence_ratio is not None
    with pytest.raises(MicrophoneLagError, match="ahead of the microphone"):
        _play(engine, clip.path, mic_lag=10_000, max_audio_lag=20)
    live.finish()
    with pytest.raises(EdgeSyncError, match="finished"):
        live.push_audio(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="mono"):
        LiveSyncer(engine).push_audio(np.zeros((2, 10), np.float32))


@pytest.fixture(scope="module")
def long_clip(clip, tmp_path_factory):
    """Long enough that the frames emitted before the end (all but the last hop + 48 of context) reach the 76 a
    null needs (``clip`` first: it skips without espeak-ng)."""
    from edge_sync.data.talking_photo import make_talking_photo_clip

    return make_talking_photo_clip(tmp_path_factory.mktemp("live_long") / "talk.mp4",
                                   "Seven wizards judge the boxing match at noon, and then they walk slowly home "
                                   "across the quiet market square.", offset_frames=PLANTED, seed=11,
                                   size=(320, 240))


def test_the_open_segment_so_far_carries_its_result_and_null(engine, long_clip):
    """current(): what an always-on app polls before a segment closes: the result over the frames emitted yet (the
    latest keep_frames of them) and the null off their embeddings, equal to the closed segment's once nothing more
    comes; None before a face is followed."""
    from edge_sync.features.faces import FaceTracker
    from edge_sync.features.media import iter_frames, read_audio
    from edge_sync.runtimes.evidence import embedding_nulls

    clip = long_clip
    audio = read_audio(clip.path)
    for keep in (None, 100):
        live = LiveSyncer(engine, keep_frames=keep)
        assert live.current() is None
        tracker = FaceTracker(detect_every=5, crops=(live.crop,))
        emitted = []
        for n, frame in enumerate(iter_frames(clip.path)):
            emitted += live.push_faces(tracker.push(frame))
            emitted += live.push_audio(audio[n * SAMPLES_PER_FRAME:(n + 1) * SAMPLES_PER_FRAME])
        emitted += live.push_faces(tracker.finish())
        now = live.current()
        assert now.result.frames == min(len(emitted), keep or len(emitted)) and now.result.offset_frames == PLANTED
        stream = live._open.stream
        assert now.null_confidences == embedding_nulls(*stream.embeddings(), engine.contract.max_offset)
        assert len(now.null_confidences) == 3 and now.unsure_reason is None  # a clear reading stands
        live.finish()
        assert live.current() is None  # closed: its answer is in result()
        assert live.result().result.frames == (keep or clip.frames)


def test_a_young_segment_is_unsure_then_checked_on_near_rolls_then_on_the_usual_ones(engine, long_clip):
    """The rule sync applies to a short soundtrack, applied to the frames a live segment has summarised so far."""
    from edge_sync.features.faces import FaceTracker
    from edge_sync.features.media import iter_frames, read_audio
    from edge_sync.runtimes.evidence import TOO_SHORT, embedding_nulls

    audio = read_audio(long_clip.path)
    live = LiveSyncer(engine)
    tracker = FaceTracker(detect_every=5, crops=(live.crop,))
    seen = set()
    for n, frame in enumerate(iter_frames(long_clip.path)):
        live.push_faces(tracker.push(frame))
        live.push_audio(audio[n * SAMPLES_PER_FRAME:(n + 1) * SAMPLES_PER_FRAME])
        now = live.current()
        if now is None:
            continue
        frames, k = now.result.frames, engine.contract.max_offset
        stream = live._open.stream
        if frames < 38:
            assert now.null_too_short and now.null_confidences == [] and now.unsure_reason.startswith(TOO_SHORT)
            seen.add("too short")
        elif frames < 76:
            assert not now.null_too_short
            near = embedding_nulls(*stream.embeddings(), k, short=True, reading=now.result.offset_frames)
            assert now.null_confidences == near != []  # rolls around the reading
            seen.add("near")
        else:
            assert now.null_confidences == embedding_nulls(*stream.embeddings(), k) != []
            seen.add("usual")
    assert seen == {"too short", "near", "usual"}
