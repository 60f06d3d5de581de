"""VGGish-style log-mel: 64 bands, 4 steps per video frame, steps centred on their own 10 ms."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_sync.features.logmel import LOGMEL, hz_to_mel, log_mel, log_mel_input, mel_matrix, num_steps
from edge_sync.spec import AUDIO_RATE, N_MELS, SAMPLES_PER_FRAME


def _tone(hz: float, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _band_centres_hz() -> np.ndarray:
    edges = np.linspace(hz_to_mel(LOGMEL.fmin), hz_to_mel(LOGMEL.fmax), LOGMEL.n_mels + 2)
    return 700.0 * np.expm1(edges[1:-1] / 1127.0)


@pytest.mark.parametrize("frames", [1, 5, 12])
def test_four_steps_per_video_frame(frames):
    rng = np.random.default_rng(frames)
    spec = log_mel(rng.uniform(-0.5, 0.5, SAMPLES_PER_FRAME * frames).astype(np.float32))
    assert spec.shape == (N_MELS, 4 * frames) and spec.dtype == np.float32
    assert np.isfinite(spec).all()


@pytest.mark.parametrize("n", [159, 160, 161, 400, 1000, 16_000])
def test_step_count_is_len_over_hop(n):
    assert log_mel(np.zeros(n, np.float32)).shape == (64, n // 160) == (64, num_steps(n))


def test_silence_is_log_offset():
    assert np.allclose(log_mel(np.zeros(640, np.float32)), np.log(0.01))


def test_mel_matrix_bands():
    m = mel_matrix()
    assert m.shape == (257, 64) and (m >= 0).all() and (m[0] == 0).all()
    freqs = np.linspace(0, AUDIO_RATE / 2, 257)
    used = freqs[(m > 0).any(axis=1)]
    assert used.min() > 125 and used.max() < 7500  # 125-7500 Hz, as VGGish
    assert (m.max(axis=0) > 0.3).all()  # every band gets at least one FFT bin


def test_1khz_tone_peaks_in_the_band_holding_1khz():
    spec = log_mel(_tone(1000.0))
    band = int(np.argmax(spec.mean(axis=1)))
    centres = _band_centres_hz()
    assert band == int(np.argmin(np.abs(centres - 1000.0)))
    assert centres[band - 1] < 1000.0 < centres[band + 1]
    # and a higher tone lands in a higher band
    assert int(np.argmax(log_mel(_tone(3000.0)).mean(axis=1))) > band


def test_steps_are_centred_on_their_hop():
    """A click at the middle of hop k is loudest in step k: steps line up with video frames."""
    for k in (0, 7, 13, 19):
        x = np.zeros(640 * 5, np.float32)
        x[160 * k + 80] = 1.0
        energy = np.exp(log_mel(x)).sum(axis=0)
        assert int(np.argmax(energy)) == k


def test_int16_and_other_rates():
    x = _tone(440.0, 0.2)
    as_int = np.round(x * 32767).astype(np.int16)
    assert np.allclose(log_mel(as_int), log_mel(as_int.astype(np.float32) / 32768.0), atol=1e-5)
    x8k = _tone(440.0, 0.2)[::2]  # 8 kHz version of the same tone
    assert log_mel(x8k, sample_rate=8000).shape == (64, 20)


def test_model_input_shape_and_padding():
    x = _tone(500.0, 0.2)  # 3200 samples = 5 frames
    assert log_mel_input(x).shape == (1, 1, 64, 20)
    padded = log_mel_input(x, frames=8)
    assert padded.shape == (1, 1, 64, 32)
    assert np.allclose(padded[..., 21:], np.log(0.01))
    assert log_mel_input(x, frames=2).shape == (1, 1, 64, 8)


def test_rejects_bad_signals():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 640), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        log_mel(np.full(640, np.nan, np.float32))
    with pytest.raises(TypeError):
        log_mel(np.array(["a"] * 640))


def test_numpy_only():
    code = ("import sys, edge_sync.features.logmel as m; "
            "bad = [x for x in ('torch', 'scipy') if x in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
