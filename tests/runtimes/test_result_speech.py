"""Honest confidence: a result says how much of its span had sound and speech, and with no speech its confidence
is 0 and its probability chance, whether it came from Engine.run, a stream or a file."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.features.mfcc import audio_to_mfcc_input
from edge_sync.features.speech import SpeechPresence, speech_presence
from edge_sync.runtimes.result import SyncResult
from edge_sync.spec import MOUTH, SAMPLES_PER_FRAME


def _outputs(frames: int = 40, k: int = 15, peak: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs that clearly favour offset ``peak``."""
    probs = np.full((2 * k + 1, frames), 0.01)
    probs[k + peak] = 1.0
    corr = np.zeros((2 * k + 1, frames))
    corr[k + peak] = 0.9
    return probs / probs.sum(0), corr


def test_no_speech_sets_confidence_to_zero_and_probability_to_chance() -> None:
    probs, corr = _outputs()
    measured = SyncResult.from_outputs(probs, corr)
    assert measured.confidence > 0.5 and measured.probability > 0.5 and measured.speech is None
    assert not measured.no_speech and measured.to_dict()["speech"] is None
    silent = SpeechPresence(frames=40, speech_frames=0, sound_frames=0, noise_floor_db=-100.0)
    gated = SyncResult.from_outputs(probs, corr, speech=silent)
    assert gated.no_speech and gated.confidence == 0.0
    assert gated.probability == pytest.approx(1 / 31)  # chance over the 2K+1 offsets, never above it
    assert gated.offset_frames == measured.offset_frames == 3  # kept as found, flagged as a guess
    d = gated.to_dict(per_frame=False)
    assert d["no_speech"] is True and d["confidence"] == 0.0 and d["speech"]["fraction"] == 0.0
    spoken = SpeechPresence(frames=40, speech_frames=30, sound_frames=40, noise_floor_db=-60.0)
    kept = SyncResult.from_outputs(probs, corr, speech=spoken)
    assert not kept.no_speech and kept.confidence == measured.confidence
    assert kept.probability == measured.probability


@pytest.fixture(scope="module")
def engine_and_clip():
    """The bundled student and a synthetic talking clip (speech from the hold-out bank)."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    from edge_sync.data.synthetic import make_clip
    from edge_sync.runtimes.api import load

    return load(), make_clip(1000, 5, "holdout", frames=150, offset=0)


def _run(engine, waveform: np.ndarray, crops: np.ndarray) -> SyncResult:
    frames = len(crops)
    return engine.run(audio_to_mfcc_input(waveform, frames), MOUTH.normalise(crops)[None])


@pytest.mark.parametrize("sound", ["silence", "white noise"])
def test_engine_run_on_speech_free_audio_says_no_speech(engine_and_clip, sound) -> None:
    engine, clip = engine_and_clip
    n = len(clip.waveform)
    audio = np.zeros(n) if sound == "silence" else np.random.default_rng(2).normal(0, 0.05, n)
    res = _run(engine, audio, clip.frames_uint8)
    assert res.no_speech and res.speech.fraction < 0.1
    assert res.confidence == 0.0 and res.probability <= 1 / 31 + 1e-9
    assert res.speech.sound_fraction == (0.0 if sound == "silence" else 1.0)
    assert res.speech.audio_coverage is None  # numpy in: how much the soundtrack covers is unknown


def test_engine_run_on_speech_keeps_its_numbers(engine_and_clip) -> None:
    engine, clip = engine_and_clip
    res = _run(engine, clip.waveform, clip.frames_uint8)
    assert not res.no_speech and res.speech.fraction > 0.3 and res.confidence > 0
    assert res.speech.frames == res.frames == len(clip.frames_uint8)


def test_stream_result_has_the_offline_speech_presence(engine_and_clip) -> None:
    """Streamed and offline results decide speech from the same (float16) MFCC, so they agree frame by frame,
    also for a rolling result that keeps only the latest frames."""
    engine, clip = engine_and_clip
    offline = _run(engine, clip.waveform, clip.frames_uint8)
    for keep in (None, 60):
        stream = engine.stream(hop_frames=20, keep_frames=keep)
        for t in range(len(clip.frames_uint8)):
            stream.push(audio=clip.waveform[t * SAMPLES_PER_FRAME:(t + 1) * SAMPLES_PER_FRAME],
                        crops=clip.frames_uint8[t])
        stream.push(audio=clip.waveform[len(clip.frames_uint8) * SAMPLES_PER_FRAME:])
        stream.flush()
        got = stream.result()
        assert got.speech is not None and got.speech.frames == got.frames
        if keep is None:
            np.testing.assert_array_equal(got.speech.speech, offline.speech.speech)
            assert got.no_speech == offline.no_speech
        else:
            frames = len(clip.frames_uint8)
            tail = audio_to_mfcc_input(clip.waveform, frames)[..., -keep * 4:]
            np.testing.assert_array_equal(got.speech.speech, speech_presence(tail).speech)
