"""Streaming: pushed in ragged chunks, results equal the offline run, arrive within the latency bound, and
memory stays bounded."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

from edge_sync.data.synthetic import make_clip  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.features.mfcc import audio_to_mfcc_input  # noqa: E402
from edge_sync.runtimes.api import load  # noqa: E402
from edge_sync.spec import MOUTH, SAMPLES_PER_FRAME  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    return load()


@pytest.fixture(scope="module")
def clip():
    return make_clip(1000, 3, "holdout", frames=230, offset=4)


def _offline(engine, clip):
    frames = clip.frames_uint8.shape[0]
    return engine.run(audio_to_mfcc_input(clip.waveform, frames), MOUTH.normalise(clip.frames_uint8)[None])


def test_ragged_pushes_give_the_offline_result_within_the_latency_bound(engine, clip):
    offline = _offline(engine, clip)
    stream = engine.stream(hop_frames=20)
    rng = np.random.default_rng(0)
    wave, crops = clip.waveform, clip.frames_uint8
    got, a, v, buffered = [], 0, 0, []
    while v < len(crops) or a < len(wave):
        n_a, n_v = int(rng.integers(1, 3000)), int(rng.integers(0, 9))
        emitted = stream.push(audio=wave[a:a + n_a] if a < len(wave) else None,
                              crops=crops[v:v + n_v] if v < len(crops) and n_v else None)
        a, v = a + n_a, min(len(crops), v + n_v)
        got += emitted
        heard = min(v, (min(a, len(wave)) - 240) // SAMPLES_PER_FRAME)  # frames with their audio complete
        assert len(got) >= heard - stream.latency_frames  # every frame older than the bound has its result
        buffered.append(len(stream._crops) - max(0, v - heard))  # minus frames still waiting for their audio
    got += stream.flush()
    assert [f.frame for f in got] == list(range(len(crops)))
    probs = np.stack([f.probs for f in got], axis=1)
    np.testing.assert_allclose(probs, offline.frame_probs, atol=2e-5)
    np.testing.assert_allclose(np.stack([f.correlation for f in got], axis=1), offline.correlation, atol=2e-5)
    assert stream.result().offset_frames == offline.offset_frames == 4
    assert max(buffered) <= stream.window + 10  # bounded: crops no later window needs are dropped


def test_int16_audio_and_one_frame_at_a_time(engine, clip):
    offline = _offline(engine, clip)
    stream = engine.stream()
    pcm = np.clip(np.rint(clip.waveform * 32768), -32768, 32767).astype(np.int16)
    got = []
    for t in range(clip.frames_uint8.shape[0]):
        got += stream.push(audio=pcm[t * SAMPLES_PER_FRAME:(t + 1) * SAMPLES_PER_FRAME], crops=clip.frames_uint8[t])
    got += stream.push(audio=pcm[clip.frames_uint8.shape[0] * SAMPLES_PER_FRAME:])
    got += stream.flush()
    probs = np.stack([f.probs for f in got], axis=1)
    assert np.mean(probs.argmax(0) == offline.frame_probs.argmax(0)) > 0.98  # int16 rounding of the samples


def test_bad_pushes_are_refused_and_a_flushed_stream_is_closed(engine, clip):
    stream = engine.stream()
    with pytest.raises(ValueError, match="crops must be uint8"):
        stream.push(crops=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="mono samples"):
        stream.push(audio=np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        stream.push(audio=np.full(10, np.nan, np.float32))
    with pytest.raises(TypeError, match="int16"):
        stream.push(audio=np.zeros(10, np.int32))
    stream.push(crops=clip.frames_uint8[:30])
    with pytest.raises(EdgeSyncError, match="push the audio"):
        stream.flush()
    done = engine.stream()
    done.push(audio=clip.waveform[:30 * SAMPLES_PER_FRAME + 240], crops=clip.frames_uint8[:30])
    assert len(done.flush()) == 30
    with pytest.raises(EdgeSyncError, match="flushed"):
        done.push(crops=clip.frames_uint8[:1])


@pytest.mark.parametrize("bad, error", [("x", TypeError), (True, TypeError), (1.5, ValueError),
                                        (float("nan"), ValueError)])
def test_a_bad_previous_sample_is_refused_when_the_stream_opens(engine, bad, error):
    with pytest.raises(error, match="previous_sample"):
        engine.stream(previous_sample=bad)
    assert engine.stream(previous_sample=np.float32(-0.25)) is not None


def test_each_side_is_bounded_when_the_other_stops_and_a_refused_push_keeps_nothing(engine, clip):
    """A muted microphone or a lost face must not grow the other buffer without end: past max_lead_frames a push
    is refused whole, and the stream then goes on as if it had not been made."""
    crops, wave = clip.frames_uint8, clip.waveform
    stream = engine.stream(max_lead_frames=20)
    stream.push(crops=crops[:20])
    with pytest.raises(EdgeSyncError, match="crops would run 21 frames .* ahead of the audio"):
        stream.push(crops=crops[20:21])
    other = engine.stream(max_lead_frames=20)
    with pytest.raises(EdgeSyncError, match="audio would run 30 frames"):
        other.push(audio=wave[:30 * SAMPLES_PER_FRAME])
    # the refused pushes left both streams intact: fed in step from here, each equals the offline result
    offline = _offline(engine, clip)
    for s, start in ((stream, 20), (other, 0)):
        got = []
        if start:
            got += s.push(audio=wave[:start * SAMPLES_PER_FRAME])
        for t in range(start, len(crops)):
            got += s.push(audio=wave[t * SAMPLES_PER_FRAME:(t + 1) * SAMPLES_PER_FRAME], crops=crops[t])
        got += s.push(audio=wave[len(crops) * SAMPLES_PER_FRAME:])
        got += s.flush()
        probs = np.stack([f.probs for f in got], axis=1)
        assert probs.shape[1] == len(crops)
        assert np.mean(probs.argmax(0) == offline.frame_probs.argmax(0)) > 0.98


def test_rolling_result_keeps_only_the_latest_frames(engine, clip):
    """keep_frames: result() summarises the latest frames only, and the held results stay that small."""
    from edge_sync.runtimes.result import SyncResult

    offline = _offline(engine, clip)
    stream = engine.stream(hop_frames=20, keep_frames=60)
    frames = len(clip.frames_uint8)
    held = []
    for v in range(0, frames, 7):
        a0, a1 = v * SAMPLES_PER_FRAME, min(len(clip.waveform), (v + 7) * SAMPLES_PER_FRAME)
        stream.push(audio=clip.waveform[a0:a1], crops=clip.frames_uint8[v:v + 7])
        held.append(sum(p.shape[1] for p in stream._held["sync_probs"]))
        assert sum(p.shape[1] for p in stream._held["mfcc"]) == 4 * held[-1]  # every held part trimmed alike
    stream.push(audio=clip.waveform[frames * SAMPLES_PER_FRAME:])
    stream.flush()
    assert max(held) == 60
    expected = SyncResult.from_outputs(offline.frame_probs[:, -60:], offline.correlation[:, -60:])
    got = stream.result()
    np.testing.assert_allclose(got.frame_probs, expected.frame_probs, atol=2e-5)
    assert got.offset_frames == expected.offset_frames and got.frames == 60
    with pytest.raises(ValueError, match="keep_frames"):
        engine.stream(keep_frames=0)


def test_a_stream_keeps_the_embeddings_it_is_asked_for_as_the_offline_run_gives_them(engine, clip):
    """keep_embeddings: embeddings() holds the kept frames' audio and video embeddings, equal to the offline
    run's (float16 storage aside) and trimmed with keep_frames; None when not asked for."""
    frames = clip.frames_uint8.shape[0]
    offline = engine.run_outputs(audio_to_mfcc_input(clip.waveform, frames), MOUTH.normalise(clip.frames_uint8)[None])
    for keep in (None, 70):
        stream = engine.stream(hop_frames=20, keep_frames=keep, keep_embeddings=True)
        for v in range(0, frames, 9):
            stream.push(audio=clip.waveform[v * SAMPLES_PER_FRAME:(v + 9) * SAMPLES_PER_FRAME],
                        crops=clip.frames_uint8[v:v + 9])
        stream.push(audio=clip.waveform[frames * SAMPLES_PER_FRAME:])
        stream.flush()
        audio_emb, video_emb = stream.embeddings()
        first = 0 if keep is None else frames - keep
        np.testing.assert_allclose(audio_emb, offline["audio_emb"][:, first:], atol=2e-3)
        np.testing.assert_allclose(video_emb, offline["video_emb"][:, first:], atol=2e-3)
    plain = engine.stream(hop_frames=20)
    plain.push(audio=clip.waveform, crops=clip.frames_uint8)
    plain.flush()
    assert plain.embeddings() is None
