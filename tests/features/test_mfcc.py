"""MFCC must equal python_speech_features (the oracle SyncNet was trained with) on real speech and noise."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.features.mfcc import audio_to_mfcc_input, mfcc, resample

psf = pytest.importorskip("python_speech_features", reason="test oracle: pip install python_speech_features")


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / (ref.max() - ref.min()))


def test_matches_oracle_on_int16_speech(speech_16k):
    rate, speech = speech_16k
    assert speech.dtype == np.int16 and rate == 16000
    ref = psf.mfcc(speech, rate)
    ours = mfcc(speech, rate)
    assert ours.shape == ref.shape == (ref.shape[0], 13)
    assert _rel_err(ours, ref) <= 1e-6


def test_matches_oracle_on_float_speech(speech_16k):
    rate, speech = speech_16k
    x = speech.astype(np.float32) / 32768.0
    assert _rel_err(mfcc(x, rate), psf.mfcc(x, rate)) <= 1e-6


@pytest.mark.parametrize("length", [1, 399, 400, 401, 16000, 16001])
def test_matches_oracle_on_noise_of_awkward_lengths(length):
    x = np.random.default_rng(length).normal(0, 0.1, length)
    ref = psf.mfcc(x, 16000)
    ours = mfcc(x, 16000)
    assert ours.shape == ref.shape
    assert _rel_err(ours, ref) <= 1e-6


def test_silence_matches_oracle():
    x = np.zeros(3200)
    np.testing.assert_allclose(mfcc(x), psf.mfcc(x, 16000), rtol=0, atol=1e-9)


def test_other_sample_rate_is_resampled_first(speech_22k, speech_16k):
    """espeak's native 22.05 kHz audio through our resampler vs sox's 16 kHz copy through the oracle."""
    rate22, speech22 = speech_22k
    _, speech16 = speech_16k
    ours = mfcc(speech22, rate22)
    ref = psf.mfcc(speech16, 16000)
    n = min(len(ours), len(ref))
    assert abs(len(ours) - len(ref)) <= 1
    # two different resamplers: compare the spectral shape, not bit patterns
    err = np.abs(ours[:n, 1:] - ref[:n, 1:]).mean() / (ref[:, 1:].max() - ref[:, 1:].min())
    assert err < 0.01
    voiced = ref[:n, 0] > np.percentile(ref[:n, 0], 30)  # silence is all resampler noise floor
    assert np.corrcoef(ours[:n][voiced].ravel(), ref[:n][voiced].ravel())[0, 1] > 0.999


def test_resample_keeps_a_tone_and_length():
    t = np.arange(44100) / 44100
    y = resample(np.sin(2 * np.pi * 440 * t), 44100, 16000)
    assert len(y) == 16000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 440) <= 1
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 2e-3


def test_resample_removes_content_above_new_nyquist():
    t = np.arange(48000) / 48000
    y = resample(np.sin(2 * np.pi * 12000 * t), 48000, 16000)  # 12 kHz cannot exist at 16 kHz
    assert np.abs(y[200:-200]).max() < 0.01


def test_model_input_is_four_steps_per_frame(speech_16k):
    rate, speech = speech_16k
    frames = len(speech) // 640
    x = audio_to_mfcc_input(speech.astype(np.float32) / 32768.0, frames)
    assert x.shape == (1, 1, 13, 4 * frames) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], psf.mfcc(speech, rate)[: 4 * frames].T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad, err", [
    (np.zeros((2, 100)), ValueError),
    (np.zeros(0), ValueError),
    (np.array([0.0, np.nan, 1.0]), ValueError),
    (np.array(["a", "b"]), TypeError),
])
def test_bad_input_gives_clear_error(bad, err):
    with pytest.raises(err):
        mfcc(bad)


@pytest.mark.parametrize("peak", [np.finfo(np.float32).max, 1e7])
def test_samples_far_past_any_audio_scale_are_refused_by_name(peak):
    """Not a numpy overflow deep inside the power spectrum: one line that says what to do."""
    audio = np.full(16_000, peak, np.float32)
    with pytest.raises(ValueError, match="samples reach .*rescale"):
        mfcc(audio)
    with pytest.raises(ValueError, match="samples reach"):
        audio_to_mfcc_input(audio, 25)


def test_audio_shorter_than_video_is_refused():
    with pytest.raises(ValueError, match="shorter than the video"):
        audio_to_mfcc_input(np.zeros(640 * 5, np.float32), frames=10)


def test_chunks_with_the_previous_sample_equal_the_whole_signal():
    from edge_sync.features.mfcc import mfcc

    rng = np.random.default_rng(3)
    x = rng.standard_normal(16000) * 3000
    whole = mfcc(x)
    cut = 160 * 37  # an MFCC step boundary
    tail = mfcc(x[cut:], previous=x[cut - 1])
    np.testing.assert_allclose(tail[: len(whole) - 37], whole[37:], rtol=1e-9, atol=1e-9)
    assert not np.allclose(mfcc(x[cut:])[0], whole[37])  # without it the first window's pre-emphasis differs


def test_cepstral_offset_is_what_a_level_or_a_tilt_does_to_the_mfcc():
    """A level change moves only the energy coefficient, exactly; a filter moves the other coefficients by the
    liftered DCT of the log-gain it causes in each mel band (measured here from the band energies themselves)."""
    from scipy.signal import lfilter

    from edge_sync.features.mfcc import cepstral_offset, mel_filterbank
    from edge_sync.spec import MFCC

    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000) * 0.1
    base = mfcc(x)
    louder = mfcc(x * 10 ** (6.0 / 20.0))  # +6 dB
    predicted = cepstral_offset(np.full(MFCC.nfilt, 6.0 * np.log(10.0) / 10.0))
    assert np.allclose(louder - base, predicted[None, :], atol=1e-4)
    assert np.allclose(predicted[1:], 0.0, atol=1e-6)

    bank = mel_filterbank(MFCC.nfilt, MFCC.nfft, MFCC.sample_rate, MFCC.lowfreq, MFCC.sample_rate / 2)

    def log_bands(signal):  # python_speech_features' filterbank energies, 25 ms frames every 10 ms
        emphasised = np.concatenate([signal[:1], signal[1:] - MFCC.preemph * signal[:-1]])
        frames = np.lib.stride_tricks.sliding_window_view(emphasised, 400)[::160]
        return np.log(np.abs(np.fft.rfft(frames, MFCC.nfft)) ** 2 / MFCC.nfft @ bank.T)

    tilted = lfilter([1.0, -0.5], [1.0], x)  # a gentle high-pass
    bands = log_bands(x)
    gain = (log_bands(tilted) - bands).mean(axis=0)
    assert gain[-1] > 0.5 > -0.5 > gain[len(gain) // 2]  # more high bands, fewer middle ones
    measured = (mfcc(tilted) - base)[:len(bands)].mean(axis=0)  # the same (full) frames
    assert np.allclose(measured[1:], cepstral_offset(gain)[1:], atol=1e-4)
    with pytest.raises(ValueError, match="one value per mel band"):
        cepstral_offset(np.zeros(5))
