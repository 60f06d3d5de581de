"""Speech presence from the model's MFCC: silence and noise of any colour or modulation are not speech, real and
synthetic speech is, also under noise; a short soundtrack is reported as padding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sync.features.mfcc import audio_to_mfcc_input, resample
from edge_sync.features.speech import MIN_SPEECH_FRAMES, speech_presence
from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME

REAL_CLIPS = Path(__file__).resolve().parents[2].parent / "shared" / "real_clips"
SECONDS = 6


def _presence(audio: np.ndarray, covered_frames: float | None = None):
    frames = len(audio) // SAMPLES_PER_FRAME
    return speech_presence(audio_to_mfcc_input(audio[:frames * SAMPLES_PER_FRAME], frames), covered_frames)


@pytest.fixture(scope="module")
def speech(speech_22k) -> np.ndarray:
    """espeak-ng speech at 16 kHz with half a second of silence each side, float in [-1, 1]."""
    rate, pcm = speech_22k
    voice = resample(pcm / 32768.0, rate, AUDIO_RATE)
    pad = np.zeros(AUDIO_RATE // 2)
    return np.concatenate([pad, voice, pad])


def _noises(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    white = rng.normal(0.0, 1.0, n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
    t = np.arange(n) / AUDIO_RATE
    return {"white quiet": 0.003 * white, "white loud": 0.3 * white, "pink": 0.1 * pink / pink.std(),
            "white swelling at 3 Hz": 0.1 * white * (1 + 0.9 * np.sin(2 * np.pi * 3 * t)),
            "hum": 0.3 * np.sin(2 * np.pi * 50 * t), "tone": 0.3 * np.sin(2 * np.pi * 440 * t)}


def test_silence_has_neither_sound_nor_speech() -> None:
    p = _presence(np.zeros(SECONDS * AUDIO_RATE))
    assert p.no_speech and p.fraction == 0.0 and p.sound_fraction == 0.0 and p.frames == SECONDS * 25
    assert p.warnings and p.warnings[0].startswith("no sound")
    assert p.to_dict()["no_speech"] is True


@pytest.mark.parametrize("name", list(_noises(16)))
def test_noise_is_sound_but_not_speech(name) -> None:
    p = _presence(np.clip(_noises(SECONDS * AUDIO_RATE)[name], -1, 1))
    assert p.sound_fraction == 1.0
    assert p.speech_frames < MIN_SPEECH_FRAMES and p.no_speech, (name, p.fraction)
    assert p.warnings[0].startswith("no speech")


def test_speech_is_found_where_it_is(speech) -> None:
    p = _presence(speech)
    assert not p.no_speech and p.warnings == []
    assert 0.6 < p.fraction < 0.97
    assert not p.speech[:10].any() and not p.speech[-10:].any()  # the half second of silence each side


@pytest.mark.parametrize("snr_db", [20, 10])
def test_speech_under_white_noise_is_still_speech(speech, snr_db) -> None:
    voice = speech[np.abs(speech) > 0.01]
    noise = np.random.default_rng(1).normal(0.0, np.sqrt((voice ** 2).mean()) / 10 ** (snr_db / 20), len(speech))
    p = _presence(speech + noise)
    assert not p.no_speech and p.fraction > 0.25, p.fraction


def test_a_soundtrack_covering_2_of_10_seconds_is_reported_as_padding(speech) -> None:
    audio = np.zeros(10 * AUDIO_RATE)
    audio[:2 * AUDIO_RATE] = speech[AUDIO_RATE // 2:AUDIO_RATE // 2 + 2 * AUDIO_RATE]
    p = _presence(audio, covered_frames=50)
    assert p.audio_coverage == pytest.approx(0.2) and p.padded_frames == 200
    assert p.fraction == pytest.approx(0.2, abs=0.05) and not p.no_speech
    assert "padded with silence" in p.warnings[0] and "2.0 s of the 10.0 s" in p.warnings[0]
    d = p.to_dict()
    assert d["audio_coverage"] == pytest.approx(0.2) and d["padded_seconds"] == pytest.approx(8.0)
    assert _presence(audio).audio_coverage is None  # numpy input: coverage unknown


def test_float32_and_float16_mfcc_give_the_same_answer(speech) -> None:
    """The stream keeps MFCC at float16; offline runs read float32: both must decide from the same numbers."""
    frames = len(speech) // SAMPLES_PER_FRAME
    m = audio_to_mfcc_input(speech[:frames * SAMPLES_PER_FRAME], frames)
    np.testing.assert_array_equal(speech_presence(m).speech, speech_presence(m.astype(np.float16)[0, 0]).speech)


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason="shared/real_clips is not here")
@pytest.mark.parametrize("name", ["lrs3_s1.mp4", "grid_ans1.mp4", "vr_4.mp4", "pcavs_681100216.mp4"])
def test_real_clips_speak(name) -> None:
    """Quiet (vr_4, -51..-43 dB), noisy (pcavs_681100216, floor -25 dB) and studio clips all read as speech."""
    from edge_sync.features.media import read_audio

    path = REAL_CLIPS / name
    if not path.exists():
        pytest.skip(f"{name} is not in shared/real_clips")
    p = _presence(read_audio(path))
    assert not p.no_speech and p.fraction > 0.4, p.fraction
