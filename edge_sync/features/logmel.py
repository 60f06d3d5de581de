"""VGGish-style log-mel spectrogram, numpy only: the ``"logmel"`` audio input [B, 1, 64, 4T].

Same recipe as VGGish's front end (AudioSet): 16 kHz float audio in [-1, 1], 25 ms periodic-Hann windows
(400 samples) every 10 ms (160 samples), |rfft| magnitudes over 512 bins (no pre-emphasis, not power),
64 triangular bands equally spaced on the HTK mel scale (1127 ln(1 + f/700)) between 125 and 7500 Hz, and
``log(mel + 0.01)``.

Framing is the one difference, and it is on purpose: VGGish frames without padding, which yields
``1 + (n - 400) // 160`` steps. Here step i is centred on the middle of the i-th 10 ms hop, sample
``160 i + 80``: the signal is zero-padded by 120 samples in front and as much as needed behind, giving exactly
``N = len(audio) // 160`` steps. So T video frames of audio (640 T samples) give exactly 4 T steps, and
steps 4t..4t+3 are centred inside video frame t's own 40 ms, which is what a time-aligned sync model needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_sync.features.mfcc import float_samples, resample
from edge_sync.spec import AUDIO_INPUTS, AUDIO_RATE, N_MELS, audio_steps


@dataclass(frozen=True)
class LogMelParams:
    """VGGish's log-mel settings (its vggish_params), at edge-sync's 16 kHz rate."""

    sample_rate: int = AUDIO_RATE
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms -> 100 steps/s = 4 per 25 fps frame
    nfft: int = 512  # next power of two above the window
    n_mels: int = N_MELS
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.01


LOGMEL = LogMelParams()


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale as VGGish uses it: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=8)
def mel_matrix(params: LogMelParams = LOGMEL) -> np.ndarray:
    """[nfft // 2 + 1, n_mels] weights: triangles in mel between equally spaced mel edges, DC bin zeroed."""
    if not 0.0 <= params.fmin < params.fmax <= params.sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= Nyquist, got {params.fmin}..{params.fmax} Hz "
                         f"at {params.sample_rate} Hz")
    n_bins = params.nfft // 2 + 1
    bin_mel = hz_to_mel(np.linspace(0.0, params.sample_rate / 2, n_bins))[:, None]
    edges = np.linspace(float(hz_to_mel(params.fmin)), float(hz_to_mel(params.fmax)), params.n_mels + 2)
    lo, centre, hi = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bin_mel - lo) / (centre - lo)
    falling = (hi - bin_mel) / (hi - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no band energy
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=8)
def _periodic_hann(n: int) -> np.ndarray:
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    w.setflags(write=False)
    return w


def num_steps(n_samples: int, params: LogMelParams = LOGMEL) -> int:
    """Log-mel steps for ``n_samples`` samples: ``n_samples // hop`` (640 T samples -> 4 T steps)."""
    return int(n_samples) // params.hop_length


def log_mel(signal: np.ndarray, sample_rate: int = AUDIO_RATE, params: LogMelParams = LOGMEL) -> np.ndarray:
    """Log-mel spectrogram [n_mels, N] float32 of a mono signal, N = len(signal at 16 kHz) // 160.

    Float input is taken as [-1, 1] audio; integer input is scaled by 1/32768 (int16 full scale). Other
    sample rates are resampled to ``params.sample_rate`` first. Fewer than 160 samples give N = 0 steps.
    """
    x = float_samples(signal, "log_mel")
    if sample_rate != params.sample_rate:
        x = resample(x, sample_rate, params.sample_rate)
    n = num_steps(len(x), params)
    if n == 0:
        return np.zeros((params.n_mels, 0), dtype=np.float32)
    hop, win = params.hop_length, params.win_length
    front = (win - hop) // 2  # centre each window on the middle of its hop
    back = (n - 1) * hop + win - front - len(x)
    padded = np.concatenate([np.zeros(front), x, np.zeros(max(back, 0))])
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:n]
    magnitude = np.abs(np.fft.rfft(frames * _periodic_hann(win), params.nfft))
    mel = magnitude @ mel_matrix(params)
    return np.log(mel + params.log_offset).T.astype(np.float32)


def log_mel_input(signal: np.ndarray, frames: int | None = None, sample_rate: int = AUDIO_RATE,
                  params: LogMelParams = LOGMEL) -> np.ndarray:
    """Model input [1, 1, 64, 4T] for ``frames`` video frames (default: as many whole frames as the audio has).

    Audio shorter than ``frames`` frames is zero-padded at the end; longer audio is cut.
    """
    spec = log_mel(signal, sample_rate, params)
    per_frame = AUDIO_INPUTS["logmel"].steps_per_frame
    steps = audio_steps(frames, "logmel") if frames is not None else spec.shape[1] - spec.shape[1] % per_frame
    if spec.shape[1] < steps:
        silence = np.log(params.log_offset)
        spec = np.concatenate([spec, np.full((spec.shape[0], steps - spec.shape[1]), silence, np.float32)], axis=1)
    return np.ascontiguousarray(spec[None, None, :, :steps])
